#!/bin/sh
# Entrypoint wrapper of the compose Prometheus: writes which GPU each serving service runs on
# into a rule file, then execs the rest of its arguments (Prometheus and its flags).
#
# QB_GPU_OWNERS: "service=gpu ..." pairs, gpu an nvidia-smi index or a GPU-... UUID, rendered by
# docker-compose.yml from the same .env values as each service's device_ids.
# QB_GPU_OWNERS_FILE: where to write the rules (prometheus.yml's rule_files reads generated/*.yml).
# The result is one series per pair, quantbench:gpu_assignment{service, device_id} = 1, which
# rules/gpu.yml joins with dcgm-exporter's gpu/UUID labels and the services that are up.
set -eu

out=${QB_GPU_OWNERS_FILE:?set QB_GPU_OWNERS_FILE to the rule file to write}
tmp="$out.tmp.$$"
mkdir -p "$(dirname "$out")"
{
    echo "# Written by gpu-owners.sh when the container started, from QB_GPU_OWNERS."
    echo "groups:"
    echo "  - name: quantbench-gpu-assignment"
    echo "    rules:"
    for pair in ${QB_GPU_OWNERS:-}; do
        service=${pair%%=*}
        gpu=${pair#*=}
        case "$service$gpu" in
            *[!A-Za-z0-9_-]* | "")
                echo "gpu-owners.sh: skipping '$pair' (want service=gpu, letters, digits, - and _)" >&2
                continue
                ;;
        esac
        if [ "$service" = "$pair" ] || [ -z "$service" ] || [ -z "$gpu" ]; then
            echo "gpu-owners.sh: skipping '$pair' (want service=gpu)" >&2
            continue
        fi
        echo "      - record: quantbench:gpu_assignment"
        echo "        expr: vector(1)"
        echo "        labels: {service: \"$service\", device_id: \"$gpu\"}"
    done
} >"$tmp"
mv "$tmp" "$out"
exec "$@"

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from loadtest.config import WorkloadConfig
from loadtest.prompts import DatasetError, PromptSource, load_dataset
from loadtest.workload import VOCABULARY, RequestFactory


@pytest.mark.parametrize("tokens", [1, 7, 64, 333])
def test_tokenizer_makes_prompt_lengths_exact(tokenizer_json: Path, tokens: int) -> None:
    source = PromptSource(VOCABULARY, tokenizer_path=tokenizer_json)
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    prompt = source.make(tokens, random.Random(tokens))
    assert len(tokenizer.encode(prompt, add_special_tokens=False).ids) == tokens
    assert source.length_source == "tokenizer"


def test_shared_prefix_is_common_to_every_prompt() -> None:
    source = PromptSource(VOCABULARY, shared_prefix_ratio=0.5, seed=3)
    first, second = (source.make(100, random.Random(i)).split() for i in range(2))
    assert first[:50] == second[:50] and first[50:] != second[50:]
    assert len(first) == len(second) == 100
    assert source.length_source == "approximate"


def test_calibration_scales_words_to_tokens() -> None:
    source = PromptSource(VOCABULARY, tokens_per_word=1.25)
    assert len(source.make(100, random.Random(0)).split()) == 80
    assert source.length_source == "calibrated"


def test_jsonl_and_sharegpt_datasets(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"prompt": "hi there", "output_tokens": 5}\n\n{"prompt": "again"}\n')
    assert [(i.prompt, i.output_tokens) for i in load_dataset(jsonl)] == [
        ("hi there", 5),
        ("again", None),
    ]
    sharegpt = tmp_path / "s.json"
    sharegpt.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "q one"},
                        {"from": "gpt", "value": "a b c"},
                    ]
                },
                {"conversations": [{"from": "gpt", "value": "only the model"}]},
            ]
        )
    )
    assert [(i.prompt, i.output_tokens) for i in load_dataset(sharegpt)] == [("q one", 3)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"prompt": "ok"}\n{"prompt": \n', r"d.jsonl:2: not JSON"),
        ('{"prompt": ""}\n', r'd.jsonl:1: needs a non-empty "prompt"'),
        ('{"prompt": "x", "output_tokens": 0}\n', r'd.jsonl:1: "output_tokens" must be'),
        ("[1, 2]", r"d.jsonl: entry 0 has no `conversations`"),
        ("\n\n", r"d.jsonl: no usable prompts"),
    ],
)
def test_bad_datasets_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_dataset_requests_are_seeded(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"prompt number {i}"}) + "\n" for i in range(20)))
    items = load_dataset(path)
    workload = WorkloadConfig(dataset=path, output_tokens=9, seed=4)  # type: ignore[arg-type]
    first = [RequestFactory(workload, 1, dataset=items).next() for _ in range(3)]
    assert first == [RequestFactory(workload, 1, dataset=items).next() for _ in range(3)]
    assert first[0].prompt.startswith("prompt number") and first[0].max_tokens == 9
    assert first[0].prompt_tokens == 3

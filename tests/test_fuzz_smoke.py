"""The fuzz target's one-input function over the hostile corpus, without atheris.

Every corpus file, and deterministic truncations and byte flips of each, go through
``fuzz/fuzz_parse_assemble.py``'s :func:`one_input`; it swallows only the gate's documented
:class:`~gate.errors.InvalidObjectError`, so any other exception fails this test. The real fuzzing
(coverage-guided, bounded in time) runs in CI with atheris; see fuzz/README.md.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gate.synth.hostile import build, corpus_files
from tests.conftest import REPO

TARGET = REPO / "fuzz" / "fuzz_parse_assemble.py"
MUTATIONS_PER_FILE = 4


def _load_one_input() -> Callable[[bytes], None]:
    spec = importlib.util.spec_from_file_location("fuzz_parse_assemble", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.one_input  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("hostile")
    build(root)
    return list(corpus_files(root))


def _mutations(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Cuts anywhere, and a few bytes changed near the header, where the parser's decisions are."""
    yield data
    if len(data) < 16:
        return
    for _ in range(MUTATIONS_PER_FILE):
        yield data[: rng.randrange(len(data))]
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(min(len(data), 4096))] = rng.randrange(256)
        yield bytes(flipped)


def test_only_documented_exceptions_escape(seeds: list[Path]) -> None:
    one_input = _load_one_input()
    rng = random.Random(20240115)
    assert len(seeds) > 30
    for path in seeds:
        for i, data in enumerate(_mutations(path.read_bytes(), rng)):
            try:
                one_input(data)
            except Exception as exc:  # noqa: BLE001 - the point: name the input that escaped
                raise AssertionError(f"{path.name} (variant {i}): {type(exc).__name__}: {exc}") from exc

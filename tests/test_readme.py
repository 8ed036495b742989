"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_readme_has_examples_and_setup_commands():
    assert len(BLOCKS) >= 2
    assert "python -m acjax.ppo_a2c --env CartPole-v1" in README
    assert "pip install -e '.[test]' && python -m pytest -q" in README


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)
    if "returns" in namespace and "state" in namespace:  # the trainer example learns
        assert float(namespace["returns"].mean()) >= 475.0

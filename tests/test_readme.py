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


def _ci_module():
    import importlib.util

    path = pathlib.Path(__file__).parent.parent / ".ci" / "readme_commands.py"
    spec = importlib.util.spec_from_file_location("readme_commands", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_set_up_commands_as_written():
    commands = _ci_module().setup_commands(README)
    assert commands == {
        "first": "pip install -e . && python -m acjax.ppo_a2c --env CartPole-v1",
        "tests": "pip install -e '.[test]' && python -m pytest -q",
    }
    ci = (pathlib.Path(__file__).parent.parent / ".ci" / "run").read_text()
    # .ci/run reads both out of README.md and runs them in a virtualenv of its own, the
    # first one before the test extras are installed.
    assert 'first=$(python .ci/readme_commands.py first)' in ci
    assert 'tests=$(python .ci/readme_commands.py tests)' in ci
    assert '*"python -m pytest"*) ;;' in ci  # a test command without pytest is refused
    assert "python -m venv" in ci and 'source "$workdir/venv/bin/activate"' in ci
    assert ci.index('bash -c "$first"') < ci.index('bash -c "$tests"')


def test_readme_commands_need_the_set_up_section():
    module = _ci_module()
    with pytest.raises(ValueError, match="no '## Set up' section"):
        module.setup_commands("# acjax\n\n## Other\n")
    with pytest.raises(ValueError, match="two ```bash blocks"):
        module.setup_commands("## Set up\n\n```bash\npip install .\n```\n\n## Next\n")

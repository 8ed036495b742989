"""Prints a set-up command of README.md exactly as written: `first` (install and train) or
`tests` (install the test extras and run the tests).

They are the first two ```bash blocks of README's "## Set up" section, one line each;
`.ci/run` runs them, and tests/test_readme.py checks that both are there.
"""

import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def setup_commands(text: str) -> dict[str, str]:
    """`{"first": ..., "tests": ...}` from README's text; ValueError when not found."""
    section = re.search(r"^## Set up\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    if section is None:
        raise ValueError("README.md has no '## Set up' section")
    blocks = re.findall(r"```bash\n(.*?)```", section.group(1), re.DOTALL)
    commands = [b.strip() for b in blocks[:2]]
    if len(commands) != 2 or any("\n" in c for c in commands):
        raise ValueError("README.md's '## Set up' needs two ```bash blocks of one line each")
    return dict(zip(("first", "tests"), commands, strict=True))


if __name__ == "__main__":
    print(setup_commands(README.read_text())[sys.argv[1]])

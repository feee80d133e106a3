"""Print the README's environment-variable table from studio.settings.ENV_VARS.

    python scripts/env_table.py --write   rewrites the table between the markers in README.md
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.settings import ENV_VARS  # noqa: E402

START, END = "<!-- env-table:start -->", "<!-- env-table:end -->"


def table() -> str:
    rows = ["| variable | meaning (default) |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in ENV_VARS.items()]
    return "\n".join(rows)


def main() -> None:
    if "--write" not in sys.argv:
        print(table())
        return
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    main()

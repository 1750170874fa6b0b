# shellcheck shell=bash
# Sourced by the benchmark scripts: bench_table NAME HEADING TABLE prints TABLE and writes it
# into docs/benchmarks.md between the markers `<!-- NAME:start -->` and `<!-- NAME:end -->`,
# appending a section titled HEADING when the markers are not there yet.
bench_table() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
name, heading, table = sys.argv[1:4]
path = "docs/benchmarks.md"
text = open(path).read()
start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
block = f"{start}\n{table}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
open(path, "w").write(text)
PY
  echo "$3"
  echo "updated docs/benchmarks.md"
}

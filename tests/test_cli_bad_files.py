"""Bad input files on the command line: one clear line on stderr naming the file, exit 2, no traceback."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.test_cli import run_cli


def assert_one_clear_line(p, *needles: str) -> None:  # noqa: ANN001
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("content", [b"hello world\n", b"\xff\xfe\x00garbage", b"<html><body>hi</body></html>",
                                     b'{"a": 1}', b"",
                                     b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
                                     b"</channel></rss>"])
def test_feeds_import_of_a_non_opml_file(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "list.txt"
    f.write_bytes(content)
    env = {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}", "NEWSDIGEST_FEEDS_FILE": ""}
    p = run_cli(["feeds", "import", str(f)], env, tmp_path)
    assert_one_clear_line(p, str(f), "not an OPML")


def test_feeds_import_of_a_missing_file_or_a_folder(tmp_path: Path) -> None:
    env = {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}", "NEWSDIGEST_FEEDS_FILE": ""}
    assert_one_clear_line(run_cli(["feeds", "import", "nope.opml"], env, tmp_path), "nope.opml", "No such file")
    assert_one_clear_line(run_cli(["feeds", "import", str(tmp_path)], env, tmp_path), str(tmp_path))


def test_eval_extract_on_a_folder_without_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "html").mkdir()
    p = run_cli(["eval", "extract", "--data", str(tmp_path)], {}, tmp_path)
    assert_one_clear_line(p, str(tmp_path), "ground-truth.json")
    p = run_cli(["eval", "extract", "--data", str(tmp_path / "missing")], {}, tmp_path)
    assert_one_clear_line(p, "missing", "not found")


def test_eval_extract_on_broken_ground_truth_or_a_missing_page(tmp_path: Path) -> None:
    (tmp_path / "ground-truth.json").write_text("{not json")
    p = run_cli(["eval", "extract", "--data", str(tmp_path)], {}, tmp_path)
    assert_one_clear_line(p, "ground-truth.json", "not valid JSON")
    (tmp_path / "ground-truth.json").write_text(json.dumps({"p1": {"articleBody": "x", "url": None}}))
    p = run_cli(["eval", "extract", "--data", str(tmp_path)], {}, tmp_path)
    assert_one_clear_line(p, "p1.html.gz")
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "p1.html.gz").write_bytes(b"not gzip")
    p = run_cli(["eval", "extract", "--data", str(tmp_path)], {}, tmp_path)
    assert_one_clear_line(p, "p1.html.gz")
    with gzip.open(tmp_path / "html" / "p1.html.gz", "wt") as f:
        f.write("<html><body><p>x</p></body></html>")
    (tmp_path / "ground-truth.json").write_text(json.dumps(["not", "a", "mapping"]))
    p = run_cli(["eval", "extract", "--data", str(tmp_path)], {}, tmp_path)
    assert_one_clear_line(p, "ground-truth.json")

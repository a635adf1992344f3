"""The viewer page's own script in a multi-stream run, run under Node with a stub DOM: ``/?stream=N`` shows
stream N (its MJPEG and its results), and the stream selector follows streams that appear later."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgevision.runtime.sinks.viewer_page import PAGE_HTML

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="runs the page's JavaScript with Node, not installed here")

HARNESS = r"""
const calls = [];
function makeEl(tag) {
  return {tag, children: [], dataset: {}, style: {}, textContent: "", className: "", value: "", selected: false,
          appendChild(c) { this.children.push(c); return c; }, replaceChildren(...c) { this.children = c; },
          get firstChild() { return this.children[0] || null; },
          set src(v) { calls.push(["img", v]); this._src = v; }, get src() { return this._src; }};
}
const els = {};
globalThis.document = {getElementById: (id) => els[id] || (els[id] = makeEl(id)), createElement: makeEl};
globalThis.location = {search: SEARCH};
const replies = REPLIES;
let served = 0;
globalThis.fetch = async (url) => {
  calls.push(["fetch", url]);
  const d = replies[Math.min(served++, replies.length - 1)];
  return {ok: true, status: 200, json: async () => d};
};
globalThis.setInterval = () => 0;
globalThis.setTimeout = () => 0;
"""

DRIVER = r"""
const box = () => document.getElementById("streams");
const options = () => (box().children[0] || {children: []}).children.map((o) => [o.value, o.selected]);
(async () => {
  await poll();                       // two streams
  const two = options();
  await poll();                       // a third stream appeared
  const three = options();
  const sel = box().children[0];
  if (sel) { sel.value = "2"; sel.onchange(); }  // the user picks stream 2
  await poll();
  console.log(JSON.stringify({calls, two, three}));
})();
"""


def latest(streams: list[int], sid: int) -> dict[str, object]:
    return {"streams": streams, "stream_id": sid, "stats": {}, "viewer": {},
            "result": {"frame": 1, "scores": [], "classes": [], "boxes": []}}


def run_page(tmp_path: Path, search: str, replies: list[dict[str, object]]) -> dict[str, list]:
    script = re.search(r"<script>(.*)</script>", PAGE_HTML, re.S)
    assert script is not None
    code = (HARNESS.replace("SEARCH", json.dumps(search)).replace("REPLIES", json.dumps(replies))
            + script.group(1) + DRIVER)
    path = tmp_path / "page.js"
    path.write_text(code, encoding="utf-8")
    out = subprocess.run([str(NODE), str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_page_opened_with_stream_n_shows_stream_n_and_lists_new_streams(tmp_path: Path) -> None:
    got = run_page(tmp_path, "?stream=1&token=t", [latest([0, 1], 1), latest([0, 1], 1), latest([0, 1, 2], 1),
                                                   latest([0, 1, 2], 2)])
    fetches = [u for kind, u in got["calls"] if kind == "fetch"]
    images = [u for kind, u in got["calls"] if kind == "img"]
    assert "stream=1" in images[0] and "token=t" in images[0], images[0]
    assert all("stream=1" in u for u in fetches[:3]), fetches
    assert got["two"] == [["0", False], ["1", True]]
    assert got["three"] == [["0", False], ["1", True], ["2", False]], "a stream that appears later is listed"
    assert "stream=2" in images[-1] and "stream=2" in fetches[-1], "picking stream 2 switches both"


def test_page_without_stream_asks_for_the_default(tmp_path: Path) -> None:
    got = run_page(tmp_path, "", [latest([0], 0)])
    fetches = [u for kind, u in got["calls"] if kind == "fetch"]
    assert fetches and not any("stream=" in u for u in fetches)
    assert got["two"] == [], "one stream: no selector"

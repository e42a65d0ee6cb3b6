"""The Train page's download job bodies (engine.jobs.download_jobs), run with a stand-in context:
no runner, no network (every address here is refused before any connection)."""
from __future__ import annotations

from engine.jobs.download_jobs import safe_class_name, urls_job


class Ctx:
    """What a job function uses of engine.jobs.JobContext."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []

    def progress(self, fraction: float, message: str = "") -> None:
        self.messages.append((fraction, message))

    def check_cancelled(self) -> None:
        pass


def test_class_names_become_safe_folder_names():
    assert safe_class_name("<b>bold</b>", 0) == "bboldb"
    assert safe_class_name("../../etc", 1) == "etc"
    assert safe_class_name("<>", 2) == "class2"
    assert len(safe_class_name("x" * 100, 0)) == 40


def test_refused_addresses_are_listed_per_class_with_their_reasons(tmp_path):
    ctx = Ctx()
    lists = {"grizzly": ["http://127.0.0.1/bear.jpg", "javascript:alert(1)"],
             "<b>teddy</b>": ["http://10.0.0.1/teddy.png"]}
    res = urls_job(ctx, lists, tmp_path / "urls")
    assert (res["kind"], res["name"], res["flip"], res["writable"]) == ("download", "my images",
                                                                        True, True)
    assert res["folder"] == str(tmp_path / "urls")
    assert [line.split(":")[0] for line in res["report"]] == ["grizzly", "bteddyb"]
    assert sorted((f["class"], f["url"]) for f in res["failed"]) == [
        ("bteddyb", "http://10.0.0.1/teddy.png"), ("grizzly", "http://127.0.0.1/bear.jpg"),
        ("grizzly", "javascript:alert(1)")]
    assert all(isinstance(f["reason"], str) and f["reason"] for f in res["failed"])
    assert [m for _, m in ctx.messages] == ["Downloading grizzly", "Downloading bteddyb"]

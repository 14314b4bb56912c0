"""The Quix Streams reference of ``make bench`` (benchmarks/quix_reference.py) runs in its
own virtualenv (``.venv-quix``, bench-only), so ``make test`` cannot run it against Quix.
Checked here without Quix: the settings it gives Quix and its per-user work, with a
stand-in for the few names it uses (quixstreams 3.28's ``Application``, ``app.topic``,
``app.dataframe(...).update(stateful=True)``, ``app.run(count=...)``, ``State``). Whether
the real Quix accepts them is what ``make bench`` shows."""

import json
import runpy
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quix_reference.py"


class FakeState:
    def __init__(self, store: dict) -> None:
        self.store = store

    def get(self, key, default=None):
        return self.store.get(key, default)

    def set(self, key, value) -> None:
        self.store[key] = value


class FakeApplication:
    made: ClassVar[list["FakeApplication"]] = []
    events: ClassVar[list[tuple[bytes, dict]]] = []

    def __init__(self, **settings) -> None:
        self.settings = settings
        self.states: dict[bytes, dict] = {}
        FakeApplication.made.append(self)

    def topic(self, name: str, **options):
        self.topic_name, self.topic_options = name, options
        return name

    def dataframe(self, topic):
        app = self

        class Frame:
            def update(self, func, stateful: bool = False):
                app.func, app.stateful = func, stateful
                return self

        return Frame()

    def run(self, count: int = 0, collect: bool = True) -> None:
        self.count, self.collect = count, collect
        for key, event in FakeApplication.events[:count]:
            self.func(event, FakeState(self.states.setdefault(key, {})))


@pytest.fixture
def fake_quixstreams(monkeypatch):
    module = types.ModuleType("quixstreams")
    module.Application = FakeApplication
    module.State = FakeState
    monkeypatch.setitem(sys.modules, "quixstreams", module)
    FakeApplication.made.clear()
    return FakeApplication


def test_the_quix_reference_does_the_per_user_work_with_changelogged_state(
    fake_quixstreams, monkeypatch, capsys, tmp_path
) -> None:
    fake_quixstreams.events = [
        (b"u1", {"timestamp": "2025-11-20T08:00:00.000000Z"}),
        (b"u2", {"timestamp": "2025-11-20T08:00:05.000000Z"}),
        (b"u1", {"timestamp": "2025-11-20T08:10:00.000000Z"}),
        (b"u1", {"timestamp": "2025-11-20T08:20:00.000000Z"}),  # beyond --events
    ]
    argv = ["quix_reference.py", "--brokers", "b:9092", "--topic", "raw", "--group", "g"]
    argv += ["--state-dir", str(tmp_path), "--events", "3"]
    monkeypatch.setattr(sys, "argv", argv)

    runpy.run_path(str(SCRIPT), run_name="__main__")

    (app,) = fake_quixstreams.made
    assert app.settings["auto_offset_reset"] == "earliest"
    assert app.settings["commit_interval"] == 0.5
    assert app.settings["use_changelog_topics"] is True
    assert app.settings["consumer_group"] == "g"
    assert app.topic_name == "raw"
    assert app.topic_options["value_deserializer"] == "json"
    assert app.stateful
    assert (app.count, app.collect) == (3, False)
    # One half-life (600 s) between u1's two events: 1 halves to 0.5, then + 1.
    assert app.states[b"u1"]["user"]["count"] == 2
    assert app.states[b"u1"]["user"]["score"] == pytest.approx(1.5)
    assert app.states[b"u2"]["user"] == {"score": 1.0, "count": 1, "at": pytest.approx(1763625605)}
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["events"] == 3
    assert printed["seconds"] >= 0

"""Loading pipeline files: each key becomes what the Python DSL would build, imports included."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flujo import Flujo, Pipeline, Step, UsageLimits
from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep
from flujo.domain.dsl.files import PipelineFile, check_pipeline_file
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import StateMachineStep
from flujo.domain.dsl.step import HumanStep
from flujo.domain.dsl.sub_pipeline import SubPipelineStep
from tests.unit import file_parts

P = "tests.unit.file_parts"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipeline_files"


@pytest.fixture(autouse=True)
def _restore_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loading puts file folders on sys.path and imports modules beside them: undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(EXAMPLES)):
            del sys.modules[name]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Write pipeline files (``{P}`` stands for this test's parts module) into a folder."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def make(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("{P}", P), encoding="utf-8")
        return path

    yield make
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def load(path: Path) -> PipelineFile:
    loaded, findings = check_pipeline_file(path)
    assert findings == [] and loaded is not None, [str(f) for f in findings]
    return loaded


def test_policies_become_the_step_config(write: Callable[..., Path]) -> None:
    path = write(
        "p.yaml",
        """
        version: 1
        steps:
          - uses: {P}:clean
            name: tidy
            max_retries: 3
            timeout_s: 2.5
            run_in_thread: true
            backoff_s: 0.1
            backoff_factor: 3
            max_backoff_s: 4
            jitter: false
            cache: strict
            cache_ttl_s: 60
            version: "7"
            cache_key_fn: {P}:key_of
            validators: [{P}:non_empty, {P}:checked]
            processors: {input: [{P}:strip], output: [{P}:strip, {P}:strip]}
            usage_limits: {total_cost_usd_limit: 0.5, total_tokens_limit: 100}
            fallback: {uses: {P}:shout, name: loud}
        """,
    )
    (step,) = load(path).pipeline.steps
    config = step.config
    assert step.name == "tidy" and step._wrapped is file_parts.clean
    assert (config.max_retries, config.timeout_s, config.run_in_thread) == (3, 2.5, True)
    assert (config.backoff_s, config.backoff_factor, config.max_backoff_s) == (0.1, 3, 4)
    assert (config.jitter, config.cache, config.cache_ttl_s, config.version) == (
        False,
        "strict",
        60,
        "7",
    )
    assert config.cache_key_fn is file_parts.key_of
    assert config.validators == (file_parts.non_empty, file_parts.checked)
    assert config.input_processors == (file_parts.strip,)
    assert config.output_processors == (file_parts.strip, file_parts.strip)
    assert config.usage_limits == UsageLimits(total_cost_usd_limit=0.5, total_tokens_limit=100)
    assert step.fallback_step is not None and step.fallback_step.name == "loud"


def test_a_step_named_by_path_keeps_its_own_config_under_the_files(
    write: Callable[..., Path],
) -> None:
    path = write(
        "p.yaml",
        """
        version: 1
        steps:
          - uses: {P}:decorated
          - uses: {P}:decorated
            name: patched
            timeout_s: 1
          - uses: {P}:decorated
            name: once
            max_retries: 0
          - uses: {P}:with_fallback
          - uses: {P}:with_fallback
            name: other_fallback
            fallback: {uses: {P}:clean, name: plain}
        """,
    )
    plain, patched, once, kept, replaced = load(path).pipeline.steps
    assert plain.name == "clean" and plain.config == file_parts.decorated.config
    assert (patched.config.max_retries, patched.config.timeout_s) == (2, 1)
    assert once.config.max_retries == 0
    assert kept.fallback_step is file_parts.spare
    assert replaced.fallback_step is not None and replaced.fallback_step.name == "plain"
    # The module's own steps are untouched: copies were renamed and configured.
    assert file_parts.decorated.name == "clean" and file_parts.decorated.config.timeout_s is None
    assert file_parts.with_fallback.fallback_step is file_parts.spare
    assert plain is not file_parts.decorated


def test_an_agent_and_default_names(write: Callable[..., Path]) -> None:
    path = write(
        "p.yaml",
        """
        version: 1
        steps:
          - uses: {P}:echo
          - uses: {P}:clean
          - name: gate
            human: {message: "Ship it?", input_model: {P}:Approval}
          - human: {message: "Really?"}
        """,
    )
    agent, clean, gate, human = load(path).pipeline.steps
    assert agent.name == "echo" and agent.agent is file_parts.echo and agent.is_async
    assert clean.name == "clean"
    assert isinstance(gate, HumanStep) and gate.input_model is file_parts.Approval
    assert isinstance(human, HumanStep) and human.name == "human_input"


def test_each_construct_builds_its_node(write: Callable[..., Path]) -> None:
    path = write(
        "p.yaml",
        """
        version: 1
        context: {P}:Notes
        steps:
          - branch:
              condition: {P}:kind
              branches:
                refund: {uses: {P}:clean}
                other: [{uses: {P}:clean}, {uses: {P}:shout}]
              default: {uses: {P}:shout}
            max_retries: 1
          - loop:
              body: {uses: {P}:clean}
              exit_condition: {P}:short
              max_loops: 4
              on_max_loops: return
          - parallel:
              branches: {a: {uses: {P}:clean}, b: {uses: {P}:shout}}
              merge: {P}:first_two
              on_branch_failure: collect
              reference_writers: {notes: a}
          - map: {body: {uses: {P}:clean}, items_from: docs, concurrency: 3}
          - name: map_by_fn
            map: {body: {uses: {P}:clean}, items_from: {P}:docs_of}
          - state_machine:
              states: {a: {uses: {P}:clean}, b: {uses: {P}:shout}}
              start: a
              end: [b, done]
              max_transitions: 6
              transitions: {a: {"again": a, "on": b, "stop": done}}
          - router:
              choose: {P}:pick_both
              branches: {a: {uses: {P}:clean}, b: {uses: {P}:shout}}
              merge: {P}:first_two
        """,
    )
    loaded = load(path)
    branch, loop, parallel, map_, by_fn, machine, router = loaded.pipeline.steps
    assert isinstance(branch, BranchStep) and branch.condition is file_parts.kind
    assert branch.branches["other"].step_names == ["clean", "shout"]
    assert branch.default is not None and branch.config.max_retries == 1
    assert isinstance(loop, LoopStep) and (loop.max_loops, loop.on_max_loops) == (4, "return")
    assert isinstance(parallel, ParallelStep) and parallel.merge is file_parts.first_two
    assert (parallel.on_branch_failure, parallel.reference_writers) == ("collect", {"notes": "a"})
    assert isinstance(map_, MapStep) and (map_.items_from, map_.concurrency) == ("docs", 3)
    assert by_fn.items_from is file_parts.docs_of and by_fn.concurrency == 1
    assert isinstance(machine, StateMachineStep) and machine.name == "state_machine"
    assert (machine.start, machine.end, machine.max_transitions) == ("a", ("b", "done"), 6)
    assert machine.transitions == {"a": {"again": "a", "on": "b", "stop": "done"}}
    assert isinstance(router, RouterStep) and router.choose is file_parts.pick_both
    assert [s.name for s in loaded.pipeline] == [
        "branch",
        "loop",
        "parallel",
        "map",
        "map_by_fn",
        "state_machine",
        "router",
    ]
    assert loaded.context_model is file_parts.Notes


def test_name_description_and_the_context_the_steps_declare(write: Callable[..., Path]) -> None:
    named = write(
        "named.yaml",
        """
        version: 1
        name: tickets
        description: Sort tickets.
        steps: [{uses: {P}:count}]
        """,
    )
    loaded = load(named)
    assert (loaded.name, loaded.description) == ("tickets", "Sort tickets.")
    assert loaded.context_model is file_parts.Notes  # count declares context: Notes
    bare = load(write("bare_name.yaml", "version: 1\nsteps: [{uses: {P}:clean}]\n"))
    assert (bare.name, bare.context_model) == ("bare_name", None)


def test_steps_declaring_unrelated_context_models_are_a_finding(
    write: Callable[..., Path],
) -> None:
    path = write(
        "p.yaml",
        "version: 1\nsteps:\n  - uses: {P}:count\n  - uses: {P}:needs_other\n",
    )
    (finding,) = check_pipeline_file(path)[1]
    assert (finding.line, finding.column) == (2, 1)
    assert "no one class is" in finding.message and "give the context model" in finding.message


def test_a_file_may_name_a_subclass_of_what_its_steps_declare(
    write: Callable[..., Path],
) -> None:
    path = write("p.yaml", "version: 1\ncontext: {P}:MoreNotes\nsteps: [{uses: {P}:count}]\n")
    assert load(path).context_model is file_parts.MoreNotes


def test_modules_beside_the_file_import_from_any_working_directory(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("flows/helpers_beside.py", "def double(x):\n    return x * 2\n")
    path = write("flows/p.yaml", "version: 1\nsteps: [{uses: helpers_beside:double}]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipeline = Pipeline.from_yaml(Path("..") / "flows" / "p.yaml")
    assert Flujo(pipeline, persist_state=False).run(21).output == 42
    assert path.is_file()


def test_a_whole_file_import_runs_as_one_step_on_the_shared_context(
    write: Callable[..., Path],
) -> None:
    write(
        "parts/counting.yaml",
        """
        version: 1
        context: {P}:Notes
        steps:
          - uses: {P}:clean
          - uses: {P}:count
        """,
    )
    path = write(
        "main.yaml",
        """
        version: 1
        context: {P}:Notes
        imports: {counting: ./parts/counting.yaml}
        steps:
          - uses: {P}:shout
          - uses: imports.counting
            max_retries: 1
          - uses: imports.counting.count
            name: count_again
        """,
    )
    loaded = load(path)
    _, sub, again = loaded.pipeline.steps
    assert isinstance(sub, SubPipelineStep) and sub.name == "counting"
    assert sub.source == str((path.parent / "parts" / "counting.yaml").resolve())
    assert sub.body.step_names == ["clean", "count"] and sub.config.max_retries == 1
    assert again.name == "count_again" and again._wrapped is file_parts.count
    assert loaded.files == (path.resolve(), Path(sub.source))

    result = Flujo(loaded.pipeline, context_model=loaded.context_model, persist_state=False).run(
        "two words"
    )
    assert result.success, result.feedback
    assert [s.name for s in result.step_history] == ["shout", "counting", "count_again"]
    assert [s.name for s in result.step_history[1].step_history] == ["clean", "count"]
    # Both counts wrote to the one context of the run.
    assert result.final_pipeline_context.seen == ["TWO WORDS", 2]
    assert result.output == 1


def test_two_files_use_each_others_parts(write: Callable[..., Path]) -> None:
    write(
        "a.yaml",
        """
        version: 1
        imports: {b: ./b.yaml}
        steps:
          - uses: {P}:clean
          - uses: imports.b.loud
        """,
    )
    b = write(
        "b.yaml",
        """
        version: 1
        imports: {a: ./a.yaml}
        steps:
          - uses: {P}:shout
            name: loud
          - uses: imports.a.clean
            name: tidy
          - uses: imports.a
            name: all_of_a
        """,
    )
    loaded = load(b)
    loud, tidy, all_of_a = loaded.pipeline.steps
    assert tidy._wrapped is file_parts.clean
    assert isinstance(all_of_a, SubPipelineStep)
    assert all_of_a.body.step_names == ["clean", "loud"]
    # One step, built once, whichever file reaches it.
    assert all_of_a.body.steps[1] is not loud and all_of_a.body.steps[1].name == "loud"
    assert Flujo(loaded.pipeline, persist_state=False).run("  a  b ").output == "A B"


def test_the_example_folder_loads_runs_and_reuses_a_step_of_the_other_file() -> None:
    triage = load(EXAMPLES / "triage.yaml")
    clarify = load(EXAMPLES / "clarify.yaml")
    assert triage.name == "triage" and triage.context_model is not None
    route = triage.pipeline.steps[2]
    assert isinstance(route, BranchStep)
    sub = route.branches["complaint"].steps[0]
    assert isinstance(sub, SubPipelineStep) and sub.body.step_names == [
        "tidy",
        "ask_details",
        "summarize",
    ]
    assert clarify.pipeline.step_names == ["tidy", "ask_details", "summarize"]
    assert clarify.pipeline.steps[0]._wrapped is triage.pipeline.steps[0]._wrapped
    runner = Flujo(triage.pipeline, context_model=triage.context_model, persist_state=False)
    result = runner.run("  My parcel arrived   broken!  ")
    assert result.output == "escalated: [complaint] My parcel arrived broken! (ask: order number?)"
    assert runner.run("where is the shop?").output.startswith("answered from the FAQ")


def test_loading_twice_gives_equal_pipelines(write: Callable[..., Path]) -> None:
    path = write(
        "p.yaml", "version: 1\nsteps: [{uses: {P}:clean}, {uses: {P}:decorated, name: d}]\n"
    )
    first, second = Pipeline.from_yaml(path), Pipeline.from_yaml(path)
    assert [s.identity for s in first] == [s.identity for s in second]


def test_a_file_with_a_human_step_is_used_by_parts_not_whole(write: Callable[..., Path]) -> None:
    write(
        "review.yaml",
        """
        version: 1
        steps:
          - uses: {P}:clean
          - name: gate
            human: {message: "Ship it?"}
        """,
    )
    whole = write(
        "whole.yaml", "version: 1\nimports: {r: ./review.yaml}\nsteps: [{uses: imports.r}]\n"
    )
    (finding,) = check_pipeline_file(whole)[1]
    assert (finding.line, finding.column) == (3, 16)
    assert finding.message == (
        "step imports.r: sub-pipeline 'r': human step 'gate' cannot run inside a control-flow "
        "step; put it in the top-level pipeline"
    )
    parts = write(
        "parts.yaml",
        "version: 1\nimports: {r: ./review.yaml}\n"
        "steps: [{uses: imports.r.clean}, {uses: imports.r.gate}]\n",
    )
    assert [type(s) for s in load(parts).pipeline] == [Step, HumanStep]

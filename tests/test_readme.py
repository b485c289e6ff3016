"""README.md and docs/lecture.md say what graphdef does: every command, output, example and path in them is
run or checked here.

The cases are read from the documents themselves, so a command added to one is tested with no change here:

- ```bash / ```sh blocks: each line is a command; a block runs top to bottom, and every command must exit 0;
- plain ``` blocks: a `$ command` line runs, and the lines after it (up to the next `$`) must be its output,
  a `...` line standing for any lines and `...` in a line for any text; `$ echo $?` shows the previous
  command's exit code, which must otherwise be 0. A block without `$` holds synopses (`graphdef train MODEL
  [--epochs N]`): the command and each of its options must be in its `--help`;
- inline spans (`graphdef ...`, `python ...`, `bash ...`) run the same way, or are checked as synopses when
  they hold placeholders (`MODEL`, `[--quick]`) or only name a command (`graphdef draw`);
- ```python blocks run in a fresh interpreter; one written as a session (`>>>`) runs as a doctest, so the
  outputs it shows are checked;
- ```yaml blocks: one whose first line names a file (`# docs/examples/bad.yaml: ...`) is that file, byte
  for byte; any other is a model that loads, or a `training:` block that trains models/digits.yaml.

Commands run from a fresh copy of the repository (nothing is written into the checkout); a plain
`graphdef ...` runs through the CLI's main() in this process (as tests/test_cli.py does: starting a process
costs seconds on a busy machine), anything else in bash. No output may show a traceback or an internal
error. Installs, the whole test suite, the benchmarks (which tests/test_benchmarks.py runs) and `graphdef serve`
(a server, which tests/test_serve.py and test_browser.py run) are skipped,
long commands shortened (`graphdef train` without --epochs runs one epoch; SHORTER), and a command met
twice runs once: the test id says which and why.
"""
import functools
import glob
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import graphdef
from conftest import time_limit
from graphdef.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/lecture.md")
TIMEOUT = 180  # seconds for one command: a hung command fails the test instead of hanging the suite
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "graphdef", "runs", ".hypothesis", ".pytest_cache",
                                     "__pycache__", "*.egg-info")
FENCE = re.compile(r"^```(\w*)\s*$")
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*(graphdef|python|bash|pip|apt-get)( |$)")
PLACEHOLDER = re.compile(r"\[|\.\.\.|\||\b[A-Z][A-Z_]+\b")  # [--option], FILE..., a | b, MODEL, RUN_DIR
NAMED_FILE = re.compile(r"# (\S+\.ya?ml)\b")
BAD_OUTPUT = ("Traceback (most recent call last)", "internal error")
SKIP = ((re.compile(r"^pip install\b"), "installs packages"),
        (re.compile(r"^apt-get\b"), "installs system packages"),
        (re.compile(r"^python -m pytest -q$"), "the whole test suite, this file included"),
        (re.compile(r"^python benchmarks/run\.py$"), "tests/test_benchmarks.py runs it, in --quick mode"),
        (re.compile(r"^graphdef serve\b"), "a server runs until stopped: test_serve.py and test_browser.py run it"))
SHORTER = ((re.compile(r"GRAPHDEF_FUZZ_EXAMPLES=\d+"), "GRAPHDEF_FUZZ_EXAMPLES=2", "2 fuzz examples"),
           (re.compile(r"^(python benchmarks/train_digits\.py)$"), r"\1 --repeats 1", "1 repeat"))
SHELL_SYNTAX = re.compile(r"[|;&<>$`(){}]")  # a command bash must run
LONG_TRAIN = re.compile(r"graphdef train (?!.*--epochs)(?!.*--resume)")
SHIM = """#!/usr/bin/env bash
# graphdef as the documentation tests run it: a training without --epochs (not a resume) runs one epoch.
if [ "$1" = train ] && [[ " $* " != *" --epochs"* && " $* " != *" --resume "* ]]; then set -- "$@" --epochs 1; fi
exec "{python}" -m graphdef "$@"
"""


@dataclass
class Case:
    kind: str  # commands, transcript, synopsis, python, yaml
    doc: str
    line: int
    text: str

    def where(self):
        return f"{self.doc}:{self.line}"


# -- reading the documents -------------------------------------------------------------------------------

def read_document(doc: str, text: str | None = None) -> tuple[list[Case], str]:
    """The fenced blocks of a Markdown file as cases, and its prose with the blocks blanked (lines kept)."""
    blocks, prose, block = [], [], None
    text = (ROOT / doc).read_text(encoding="utf-8") if text is None else text
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line) if block is None else None
        if opening:
            block = Case(opening.group(1), doc, number, "")
        elif block is not None and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.text += line + "\n"
        prose.append(line if block is None and not opening and line.strip() != "```" else "")
    return blocks, "\n".join(prose)


def block_case(block: Case) -> Case | None:
    """What a fenced block is tested as, by its language and content."""
    if block.kind in ("bash", "sh"):
        kind = "commands"
    elif block.kind == "":
        kind = "transcript" if any(line.startswith("$ ") for line in block.text.splitlines()) else "synopsis"
    elif block.kind in ("python", "yaml"):
        kind = block.kind
    else:
        return None
    return Case(kind, block.doc, block.line, block.text)


def inline_cases(doc: str, prose: str) -> list[Case]:
    """Inline code spans that are commands: run, or checked as synopses when they hold placeholders."""
    cases = []
    for match in re.finditer(r"`([^`]+)`", prose):
        text = " ".join(match.group(1).split())
        if COMMAND.match(text):
            synopsis = PLACEHOLDER.search(text) or re.fullmatch(r"graphdef [\w-]+", text)  # or names a command
            cases.append(Case("synopsis" if synopsis else "commands", doc, prose.count("\n", 0, match.start()) + 1,
                              text))
    return cases


@functools.cache
def all_cases() -> tuple[Case, ...]:
    cases = []
    for doc in DOCUMENTS:
        blocks, prose = read_document(doc)
        cases += [case for case in map(block_case, blocks) if case] + inline_cases(doc, prose)
    return tuple(cases)


def command_lines(text: str) -> list[str]:
    """The commands of a shell block: backslash continuations joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def prepare(command: str) -> tuple[str, list[str]]:
    """The command as the test runs it (skipped parts dropped, long ones shortened), and notes saying how."""
    kept, notes = [], []
    for part in command.split(" && "):
        reason = next((why for pattern, why in SKIP if pattern.search(part)), None)
        if reason:
            notes.append(f"skipped {part.split()[0]}: {reason}")
            continue
        for pattern, shorter, note in SHORTER:
            if pattern.search(part):
                part, _ = pattern.subn(shorter, part)
                notes.append(f"shortened: {note}")
        if LONG_TRAIN.search(part) or LONG_TRAIN.search(_script_text(part)):
            notes.append("shortened: train 1 epoch")
        kept.append(part)
    return " && ".join(kept), notes


def _script_text(command: str) -> str:
    """The text of the script a `bash FILE` command runs (to see which commands run inside it)."""
    words = command.split()
    path = ROOT / words[1] if words[0] == "bash" and len(words) > 1 else None
    return path.read_text(encoding="utf-8") if path and path.is_file() else ""


def case_notes(case: Case) -> list[str]:
    if case.kind not in ("commands", "transcript"):
        return []
    lines = command_lines(case.text) if case.kind == "commands" else \
        [line[2:] for line in case.text.splitlines() if line.startswith("$ ")]
    return sorted({note for line in lines for note in prepare(line)[1]})


def params(kind: str) -> list:
    """pytest parameters for the cases of one kind, the id naming the place and any skip or shortening; a case
    repeating an earlier one (the same inline command twice) is skipped, naming the first."""
    result, first = [], {}
    for case in (c for c in all_cases() if c.kind == kind):
        notes = case_notes(case)
        runnable = case.kind not in ("commands", "transcript") or any(prepare(line)[0] for line in (
            command_lines(case.text) if case.kind == "commands" else [case.text]))
        repeated = first.setdefault(case.text, case.where()) != case.where()
        notes += [f"same as {first[case.text]}"] if repeated else []
        marks = pytest.mark.skip(reason="; ".join(notes)) if repeated or not runnable else ()
        label = " ".join(case.text.split())[:60]
        result.append(pytest.param(case, marks=marks, id=" | ".join([case.where(), label, *notes])))
    return result


# -- running -------------------------------------------------------------------------------------------

@dataclass
class Workdir:
    repo: Path
    env: dict
    tmp: Path

    def run(self, command, timeout=TIMEOUT) -> subprocess.CompletedProcess:
        """Run a command line in the copy: a plain `graphdef ...` in this process (as the CLI tests do: a
        process start costs seconds on a busy machine), anything else in bash (or an argument list)."""
        if isinstance(command, str) and command.startswith("graphdef ") and not SHELL_SYNTAX.search(command):
            return self.run_graphdef(command, timeout)
        argv = ["bash", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        proc = subprocess.Popen(argv, cwd=self.repo, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: bash and what it started
            proc.communicate()
            pytest.fail(f"{command!r} still running after {timeout} s")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def run_graphdef(self, command: str, timeout: int) -> subprocess.CompletedProcess:
        """`graphdef ARGS` through the CLI's main(), words split and globs expanded as bash does."""
        words = [match for word in shlex.split(command, comments=True)[1:]
                 for match in (sorted(glob.glob(word)) if "*" in word and glob.glob(word) else [word])]
        if words[:1] == ["train"] and "--epochs" not in words and "--resume" not in words:
            words += ["--epochs", "1"]  # as SHIM does for a graphdef run by a script
        out, err = io.StringIO(), io.StringIO()
        with time_limit(timeout):
            code = main(words, out, err)
        return subprocess.CompletedProcess(words, code, out.getvalue(), err.getvalue())





@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Workdir:
    """A copy of the repository without the package (the installed graphdef runs) as the working folder, and
    an environment whose `graphdef` and `python` are this interpreter's, `graphdef train` shortened by SHIM."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=COPY_IGNORE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "graphdef").write_text(SHIM.format(python=sys.executable), encoding="utf-8")
    (bin_dir / "graphdef").chmod(0o755)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("GRAPHDEF_DEBUG", raising=False)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return Workdir(repo, {**os.environ, "PATH": path}, tmp_path)


def check_ran(case: Case, command: str, result, code: int = 0) -> None:
    """The command exited with `code` and printed no traceback or internal error."""
    output = result.stdout + result.stderr
    shown = f"{case.where()}: `{command}` exited {result.returncode}\n{output[-3000:]}"
    assert not any(bad in output for bad in BAD_OUTPUT), shown
    assert result.returncode == code, shown


def matches(shown: list[str], actual: list[str]) -> bool:
    """Whether the output lines are the shown ones: a shown `...` line stands for any lines, `...` inside a
    line for any text."""
    chunks = [[]]
    for line in shown:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    first, *middle, last = chunks if len(chunks) > 1 else chunks * 2
    if len(chunks) == 1:
        return len(actual) == len(first) and _same(first, actual)
    if not (_same(first, actual[:len(first)]) and len(actual) >= len(first)):
        return False
    position = len(first)
    for chunk in middle:
        position = next((i + len(chunk) for i in range(position, len(actual) - len(chunk) + 1)
                         if _same(chunk, actual[i:i + len(chunk)])), None)
        if position is None:
            return False
    return len(actual) - len(last) >= position and _same(last, actual[len(actual) - len(last):])


def _same(shown: list[str], actual: list[str]) -> bool:
    """Lines equal, pairwise; `...` inside a shown line matches any text."""
    return len(shown) == len(actual) and all(
        re.fullmatch(".*".join(map(re.escape, s.split("..."))), a) for s, a in zip(shown, actual))


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """A transcript's commands, each with the output lines shown after it."""
    steps = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif steps:
            steps[-1][1].append(line.rstrip())
    return [(command, _trimmed(shown)) for command, shown in steps]


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


@functools.cache
def graphdef_help(command: str) -> str:
    """`graphdef COMMAND --help`, run in this process (it only prints)."""
    out, err = io.StringIO(), io.StringIO()
    code = main([command, "--help"] if command else ["--help"], out, err)
    assert code == 0, f"graphdef {command} --help: exit {code}: {err.getvalue()}"
    return out.getvalue()


def synopsis_lines(text: str) -> list[str]:
    """A synopsis block's lines, continuation lines (indented) joined to the line they continue."""
    lines = []
    for line in text.splitlines():
        if line[:1].isspace() and lines:
            lines[-1] += " " + line.strip()
        elif line.strip():
            lines.append(line.strip())
    return lines


def synopsis_problems(synopsis: str, workdir: Workdir) -> list[str]:
    """What a synopsis names that its command's --help does not have: the command, an option, a choice."""
    words = synopsis.split("  #")[0]
    if prepare(words)[0] == "":
        return []
    program, *rest = words.split()
    if program == "torchrun":  # torchrun [its options] -m graphdef COMMAND [options]: each part against its help
        launcher, _, command = words.partition(" -m graphdef ")
        return _named_in(synopsis, launcher, _torchrun_help()) + synopsis_problems("graphdef " + command, workdir)
    if program == "graphdef":
        help_text = graphdef_help(rest[0] if rest else "")
    else:  # python SCRIPT [options]
        result = workdir.run([sys.executable, rest[0], "--help"], timeout=60)
        assert result.returncode == 0, f"{rest[0]} --help: {result.stderr}"
        help_text = result.stdout
    return _named_in(synopsis, words, help_text)


def _named_in(synopsis: str, words: str, help_text: str) -> list[str]:
    """The options and choices `words` names that `help_text` does not list."""
    options = re.findall(r"(?<![\w.-])(--?[a-zA-Z][\w-]*)", words)
    choices = [c for group in re.findall(r"--[\w-]+ ([a-z0-9]+(?:\|[a-z0-9]+)+)(?=[\s\]]|$)", words)
               for c in group.split("|")]
    return [f"`{synopsis}`: {word} is not in its --help" for word in options + choices
            if not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", help_text)]


@functools.cache
def _torchrun_help() -> str:
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def needs_dot(command: str) -> bool:
    """Whether the command renders a picture with Graphviz's `dot` (itself or in the script it runs)."""
    return bool(re.search(r"graphdef draw .*-o \S+\.(png|svg|pdf)\b", command + "\n" + _script_text(command)))


# -- the tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", params("commands"))
def test_command_runs(case, workdir):
    """Each command of a shell block (or an inline one) exits 0 without a traceback, in order."""
    for line in command_lines(case.text):
        command, _ = prepare(line)
        if command and needs_dot(command) and shutil.which("dot") is None:
            pytest.skip("needs Graphviz's dot")
        if command:
            check_ran(case, command, workdir.run(command))


@pytest.mark.parametrize("case", params("transcript"))
def test_transcript_shows_the_real_output(case, workdir):
    """Each `$ command` prints what the document shows after it, and exits as `$ echo $?` says (else 0)."""
    steps = transcript(case.text)
    for i, (command, shown) in enumerate(steps):
        following = steps[i + 1] if i + 1 < len(steps) else ("", [])
        runnable, _ = prepare(command)
        if command == "echo $?" or not runnable:
            continue
        code = int(following[1][0]) if following[0] == "echo $?" else 0
        result = workdir.run(runnable)
        check_ran(case, command, result, code)
        actual = _trimmed([line.rstrip() for line in result.stdout.splitlines() + result.stderr.splitlines()])
        assert matches(shown, actual), (f"{case.where()}: `{command}` printed\n" + "\n".join(actual)
                                        + "\n\nbut the document shows\n" + "\n".join(shown))


@pytest.mark.parametrize("case", params("synopsis"))
def test_synopsis_matches_the_help(case, workdir):
    """Every command, option and choice a synopsis names exists (`graphdef COMMAND --help` lists it)."""
    problems = [problem for line in synopsis_lines(case.text) for problem in synopsis_problems(line, workdir)]
    assert not problems, f"{case.where()}:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", params("python"))
def test_python_example_runs(case, workdir):
    """A Python block runs on its own in a fresh interpreter; a `>>>` session prints what it shows."""
    if "graphdef.onnx" in case.text:
        pytest.importorskip("onnx")
    session = case.text.lstrip().startswith(">>>")
    script = workdir.tmp / ("example.txt" if session else "example.py")
    script.write_text(case.text, encoding="utf-8")
    doctest = ["-m", "doctest", "-o", "NORMALIZE_WHITESPACE", "-o", "ELLIPSIS"] if session else []
    check_ran(case, "the example", workdir.run([sys.executable, *doctest, script]))


@pytest.mark.parametrize("case", params("yaml"))
def test_yaml_example_is_true(case, workdir):
    """A YAML block naming a file is that file; another is a model that loads, or a training block that trains."""
    named = NAMED_FILE.match(case.text)
    if named:
        path = ROOT / named.group(1)
        assert path.is_file() and path.read_text(encoding="utf-8") == case.text, \
            f"{case.where()}: the block is not the content of {named.group(1)}"
        return
    document = yaml.safe_load(case.text)
    if "graphdef" in document:
        graphdef.loads(case.text)
        return
    assert set(document) == {"training"}, f"{case.where()}: name the file, or show a whole model or training block"
    model = yaml.safe_load((ROOT / "models/digits.yaml").read_text(encoding="utf-8"))
    (workdir.repo / "models/readme_training.yaml").write_text(yaml.safe_dump({**model, **document}), encoding="utf-8")
    command = "graphdef train models/readme_training.yaml --epochs 1 -o run"
    check_ran(case, command, workdir.run(command))


def test_the_cases_are_found():
    """The extraction finds the documents' examples (a broken parser would otherwise pass vacuously)."""
    kinds = {kind: len(params(kind)) for kind in ("commands", "transcript", "synopsis", "python", "yaml")}
    assert kinds["commands"] >= 5 and kinds["transcript"] >= 4 and kinds["synopsis"] >= 4, kinds
    assert kinds["python"] >= 3 and kinds["yaml"] >= 3, kinds


@pytest.mark.parametrize("shown, actual, expected", [
    (["a", "b"], ["a", "b"], True),
    (["a"], ["a", "b"], False),
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "c", "...", "e"], ["a", "b", "c", "d", "e"], True),
    (["a", "...", "x"], ["a", "b"], False),
    (["a", "...", "a"], ["a"], False),
    (["a", "..."], ["a", "z"], True),
    (["loss ...  accuracy 1"], ["loss 0.0003  accuracy 1"], True),
    (["loss ...  accuracy 1"], ["loss 0.0003  accuracy 0.9"], False),
    ([], [], True),
])
def test_shown_output_matching(shown, actual, expected):
    assert matches(shown, actual) is expected


def test_every_kind_of_example_becomes_a_case():
    """A command added to a document is a test case, whatever its form (the cases come from the text)."""
    text = ("Run `graphdef grad m.yaml --at a=1` or `graphdef cost MODEL`; see `graphdef draw`.\n\n"
            "```bash\ngraphdef train m.yaml -o run\n```\n\n```\ngraphdef eval MODEL [--json]\n```\n\n"
            "```\n$ graphdef run m.yaml\ne = 1\n```\n\n```python\nprint(1)\n```\n\n```yaml\ngraphdef: 1\n```\n")
    blocks, prose = read_document("new.md", text)
    cases = [case for case in map(block_case, blocks) if case] + inline_cases("new.md", prose)
    assert [(case.kind, case.line) for case in cases] == [
        ("commands", 3), ("synopsis", 7), ("transcript", 11), ("python", 16), ("yaml", 20),
        ("commands", 1), ("synopsis", 1), ("synopsis", 1)]


def test_prepare_skips_installs_and_shortens_long_commands():
    assert prepare("pip install . && graphdef train models/digits.yaml") == (
        "graphdef train models/digits.yaml", ["skipped pip: installs packages", "shortened: train 1 epoch"])
    assert prepare("pip install -e \".[test]\" && python -m pytest -q")[0] == ""
    assert prepare("GRAPHDEF_FUZZ_EXAMPLES=3000 python -m pytest tests/test_fuzz.py -q")[0].startswith(
        "GRAPHDEF_FUZZ_EXAMPLES=2 ")
    assert prepare("graphdef train --resume runs/d")[1] == []


# -- what the documents name exists ------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"`((?:graphdef|models|docs|tests|benchmarks|schemas|\.ci)/[\w./*-]*)`")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_links_and_paths_exist_inside_the_repository(doc):
    """Links, backquoted paths and *.md names resolve to files of this repository (a clone has nothing else)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    missing = []
    for target in LINK.findall(text):
        if target.startswith("#"):
            missing += [] if target[1:] in anchors else [target]
        elif not re.match(r"https?://", target):
            path = (ROOT / doc).parent / target.split("#")[0]
            missing += [] if path.exists() and path.resolve().is_relative_to(ROOT) else [target]
    for path in REPO_PATH.findall(text):
        missing += [] if list(ROOT.glob(path.rstrip("/"))) else [path]
    for name in re.findall(r"[\w./-]+\.md\b", text):
        missing += [] if (ROOT / doc).parent.joinpath(name).exists() or (ROOT / name).exists() else [name]
    assert not missing, f"{doc} names what this repository does not have: {missing}"
    assert "../shared" not in text


def test_the_models_table_lists_every_model():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+\.yaml)` \|", readme, flags=re.M))
    assert listed == {path.name for path in (ROOT / "models").glob("*.yaml")}


def test_every_command_is_documented():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.search(r"\{([\w,-]+)\}", graphdef_help("")).group(1).split(",")
    assert [c for c in commands if f"graphdef {c}" not in readme] == []


def test_the_first_example_gives_what_the_readme_says():
    """The README's opening promise: `graphdef grad models/lecture.yaml --at a=3 --at b=5` gives 48, [6, 14]."""
    claim = re.search(r"value (\d+), gradient \[(\d+), (\d+)\]", (ROOT / "README.md").read_text(encoding="utf-8"))
    model = graphdef.load(ROOT / "models/lecture.yaml")
    values, gradients = model.value_and_gradients({"a": 3, "b": 5})
    assert [float(values["e"]), float(gradients["a"]), float(gradients["b"])] == [float(g) for g in claim.groups()]

"""Every vLLM name ``vllm_engine.py`` uses exists, with that shape, in the pinned vLLM release.

No GPU and no vLLM install are needed: the pinned wheel is read as a zip and its sources parsed
with ``ast``, never imported. What the engine uses is derived from the engine's own source:

- every ``from vllm... import`` name (module and name must exist, re-exports followed);
- every call of an imported name (class constructors: ``__init__`` or dataclass / msgspec fields;
  functions), with its keyword arguments and number of positional arguments;
- every attribute used on an imported class, and on the objects the engine keeps in variables
  named in ``RECEIVERS`` (the one hand-kept table here; a test fails if one of its names no
  longer occurs in the engine, so it cannot silently check nothing);
- sync / async: awaiting a synchronous method, not awaiting a coroutine, awaiting an async
  generator, calling a property or using a method as a value all fail;
- finish-reason strings and generation-config keys the engine relies on.

The wheel is found in ``${AIGC_VLLM_WHEEL_DIR:-~/.cache/aigc/vllm}`` or downloaded there with pip
(CI has PyPI); a failed download fails the test, it is not skipped.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
ENGINE_PATH = REPO_ROOT / "services" / "inference" / "src" / "aigc_inference" / "engines" / "vllm_engine.py"

# Variables in vllm_engine.py that hold vLLM objects, and the class each holds ("module:Class").
RECEIVERS = {
    "llm": "vllm.v1.engine.async_llm:AsyncLLM",
    "self._llm": "vllm.v1.engine.async_llm:AsyncLLM",
    "llm.scheduler_config": "vllm.config.scheduler:SchedulerConfig",
    "model_config": "vllm.config.model:ModelConfig",
    "tokenizer": "vllm.tokenizers.protocol:TokenizerLike",
    "self._tokenizer": "vllm.tokenizers.protocol:TokenizerLike",
    "output": "vllm.outputs:RequestOutput",
    "completion": "vllm.outputs:CompletionOutput",
    "chosen": "vllm.logprobs:Logprob",
}

# What the engine cannot work without; the derived checks must have covered each of these.
CORE_API = {
    "AsyncEngineArgs()",
    "AsyncLLM.from_engine_args()",
    "AsyncLLM.from_engine_args(usage_context=)",
    "UsageContext.OPENAI_API_SERVER",
    "AsyncLLM.generate()",
    "AsyncLLM.abort()",
    "AsyncLLM.shutdown()",
    "AsyncLLM.get_tokenizer()",
    "AsyncLLM.errored",
    "AsyncLLM.model_config",
    "ModelConfig.max_model_len",
    "SamplingParams()",
    "StructuredOutputsParams()",
    "RequestOutputKind.DELTA",
    "tokens_input()",
    "RequestOutput.outputs",
    "RequestOutput.finished",
    "CompletionOutput.text",
    "CompletionOutput.token_ids",
    "CompletionOutput.finish_reason",
    "CompletionOutput.logprobs",
    "Logprob.logprob",
    "TokenizerLike.encode()",
    "TokenizerLike.apply_chat_template()",
}

# Calls that take a coroutine object and run it later: the coroutine need not be awaited in place.
SCHEDULERS = {"create_task", "ensure_future", "run_coroutine_threadsafe", "shield", "wait_for", "gather"}
DOWNLOAD_TIMEOUT_SECONDS = 1800  # the wheel is ~330 MB


# ---------------------------------------------------------------------------------------------
# Locating the pinned wheel
# ---------------------------------------------------------------------------------------------


def _pinned_version() -> str:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"]["gpu"]:
        match = re.fullmatch(r"\s*vllm\s*==\s*([\w.+-]+)\s*(;.*)?", requirement)
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml: the gpu extra must pin vllm==X (the engine is written against X)")


@pytest.fixture(scope="session")
def pinned_version() -> str:
    """The vLLM release the gpu extra pins."""
    return _pinned_version()


@pytest.fixture(scope="session")
def vllm_wheel(pinned_version: str) -> Path:
    """The pinned vLLM wheel, downloaded with pip when it is not in the wheel directory yet."""
    directory = Path(os.environ.get("AIGC_VLLM_WHEEL_DIR") or "~/.cache/aigc/vllm").expanduser()
    pattern = f"vllm-{pinned_version}-*.whl"
    found = sorted(directory.glob(pattern))
    if not found:
        directory.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            f"vllm=={pinned_version}",
            "-d",
            str(directory),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"downloading vllm=={pinned_version} took over {DOWNLOAD_TIMEOUT_SECONDS}s; "
                f"put {pattern} in {directory} (or set AIGC_VLLM_WHEEL_DIR) and rerun"
            )
        if result.returncode != 0:
            pytest.fail(
                f"could not download vllm=={pinned_version} ({' '.join(command)}), so the vLLM API the "
                f"engine uses cannot be checked. Put {pattern} in {directory} or set AIGC_VLLM_WHEEL_DIR.\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
        found = sorted(directory.glob(pattern))
    if not found:
        pytest.fail(f"no {pattern} in {directory} after pip download")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Reading the wheel's sources
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """Where a name is defined in the wheel: a class, function, assignment or module."""

    module: str
    name: str
    node: ast.AST


@dataclass(frozen=True)
class Signature:
    """What a call may pass: positional parameters in order, keyword names, and whether it is async."""

    positional: tuple[str, ...]
    keywords: frozenset[str]
    var_positional: bool
    var_keyword: bool
    is_async: bool = False
    is_async_generator: bool = False

    @staticmethod
    def of(function: ast.FunctionDef | ast.AsyncFunctionDef, *, bound: bool) -> Signature:
        args = function.args
        positional = [a.arg for a in (*args.posonlyargs, *args.args)]
        keywords = {a.arg for a in (*args.args, *args.kwonlyargs)}
        if bound and positional:
            keywords.discard(positional[0])
            positional = positional[1:]
        is_async = isinstance(function, ast.AsyncFunctionDef)
        return Signature(
            positional=tuple(positional),
            keywords=frozenset(keywords),
            var_positional=args.vararg is not None,
            var_keyword=args.kwarg is not None,
            is_async=is_async,
            is_async_generator=is_async and _yields(function),
        )


@dataclass(frozen=True)
class Member:
    """One attribute of a class: ``method``, ``classmethod``, ``staticmethod``, ``property``,
    ``field`` (class-level annotation) or ``attribute`` (assigned in the class or on self)."""

    kind: str
    owner: str
    node: ast.AST


def _yields(function: ast.AST) -> bool:
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a module or class body, including those under if / try (TYPE_CHECKING etc.)."""
    for statement in body:
        yield statement
        if isinstance(statement, ast.If):
            yield from _top_level(statement.body)
            yield from _top_level(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _top_level(block)
            for handler in statement.handlers:
                yield from _top_level(handler.body)


def _decorator_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _function_kind(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    decorators = _decorator_names(function)
    if decorators & {"property", "cached_property", "setter", "getter", "deleter"}:
        return "property"
    if "classmethod" in decorators:
        return "classmethod"
    if "staticmethod" in decorators:
        return "staticmethod"
    return "method"


def _init_false(value: ast.expr | None) -> bool:
    """``field(init=False)``: a dataclass field that is not a constructor parameter."""
    return isinstance(value, ast.Call) and any(
        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in value.keywords
    )


class WheelSource:
    """The Python sources of a wheel, parsed on demand."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path)
        self._names = set(self._zip.namelist())
        self._trees: dict[str, ast.Module | None] = {}

    def metadata_version(self) -> str:
        metadata = next(n for n in self._names if n.endswith(".dist-info/METADATA"))
        text = self._zip.read(metadata).decode()
        match = re.search(r"^Version: (.+)$", text, re.MULTILINE)
        assert match, "wheel METADATA has no Version"
        return match.group(1).strip()

    def _file(self, module: str) -> str | None:
        base = module.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if candidate in self._names:
                return candidate
        return None

    def module(self, module: str) -> ast.Module | None:
        if module not in self._trees:
            path = self._file(module)
            self._trees[module] = (
                ast.parse(self._zip.read(path).decode(), filename=path) if path is not None else None
            )
        return self._trees[module]

    def _absolute(self, module: str, statement: ast.ImportFrom) -> str:
        if statement.level == 0:
            return statement.module or ""
        path = self._file(module) or ""
        package = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
        base = package[: len(package) - (statement.level - 1)]
        return ".".join([*base, *([statement.module] if statement.module else [])])

    def resolve(self, module: str, name: str, depth: int = 0) -> Definition | None:
        """The definition ``name`` has in ``module``, following re-exports."""
        tree = self.module(module)
        if tree is None or depth > 10:
            return None
        for statement in _top_level(tree.body):
            if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                if statement.name == name:
                    return Definition(module, name, statement)
            elif isinstance(statement, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in statement.targets):
                    return Definition(module, name, statement)
            elif isinstance(statement, ast.AnnAssign):
                if isinstance(statement.target, ast.Name) and statement.target.id == name:
                    return Definition(module, name, statement)
            elif isinstance(statement, ast.ImportFrom):
                for alias in statement.names:
                    if (alias.asname or alias.name) == name:
                        source = self._absolute(module, statement)
                        return self.resolve(source, alias.name, depth + 1) or self._submodule(
                            source, alias.name
                        )
        return self._submodule(module, name)

    def _submodule(self, module: str, name: str) -> Definition | None:
        tree = self.module(f"{module}.{name}")
        return Definition(f"{module}.{name}", name, tree) if tree is not None else None

    def klass(self, spec: str) -> Definition:
        module, name = spec.split(":")
        definition = self.resolve(module, name)
        assert definition is not None and isinstance(definition.node, ast.ClassDef), f"{spec} is not a class"
        return definition

    def mro(self, cls: Definition) -> list[Definition]:
        """The class and its bases found in the wheel (bases from other packages are left out)."""
        order = [cls]
        assert isinstance(cls.node, ast.ClassDef)
        for base in cls.node.bases:
            expr = base.value if isinstance(base, ast.Subscript) else base
            if not isinstance(expr, ast.Name):
                continue
            found = self.resolve(cls.module, expr.id)
            if found is not None and isinstance(found.node, ast.ClassDef):
                order.extend(b for b in self.mro(found) if b not in order)
        return order

    def members(self, cls: Definition) -> dict[str, Member]:
        found: dict[str, Member] = {}
        for owner in self.mro(cls):
            assert isinstance(owner.node, ast.ClassDef)
            own: dict[str, Member] = {}
            for statement in _top_level(owner.node.body):
                if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                    own.setdefault(statement.name, Member(_function_kind(statement), owner.name, statement))
                elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    own.setdefault(statement.target.id, Member("field", owner.name, statement))
                elif isinstance(statement, ast.Assign):
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            own.setdefault(target.id, Member("attribute", owner.name, statement))
            for function in ast.walk(owner.node):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    targets = (
                        node.targets
                        if isinstance(node, ast.Assign)
                        else [node.target]
                        if isinstance(node, ast.AnnAssign)
                        else []
                    )
                    for target in targets:
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "self"
                        ):
                            own.setdefault(target.attr, Member("attribute", owner.name, node))
            for name, member in own.items():
                found.setdefault(name, member)
        return found

    def constructor(self, cls: Definition) -> Signature:
        """``__init__`` if a class in the wheel defines one, else the annotated fields (dataclass,
        pydantic dataclass, msgspec Struct, TypedDict), bases first."""
        order = self.mro(cls)
        for owner in order:
            assert isinstance(owner.node, ast.ClassDef)
            for statement in owner.node.body:
                if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
                    return Signature.of(statement, bound=True)
        fields: list[str] = []
        for owner in reversed(order):
            assert isinstance(owner.node, ast.ClassDef)
            for statement in owner.node.body:
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and not ast.unparse(statement.annotation).startswith(("ClassVar", "typing.ClassVar"))
                    and not _init_false(statement.value)
                    and statement.target.id not in fields
                ):
                    fields.append(statement.target.id)
        return Signature(tuple(fields), frozenset(fields), var_positional=False, var_keyword=False)


@pytest.fixture(scope="session")
def wheel(vllm_wheel: Path) -> WheelSource:
    return WheelSource(vllm_wheel)


# ---------------------------------------------------------------------------------------------
# What the engine uses
# ---------------------------------------------------------------------------------------------


@dataclass
class EngineUsage:
    """The engine's use of vLLM, checked against the wheel; ``failures`` says what does not fit."""

    wheel: WheelSource
    tree: ast.Module
    imports: dict[str, Definition] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)

    def run(self) -> EngineUsage:
        for parent in ast.walk(self.tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self._check_imports()
        receivers = {key: self.wheel.klass(spec) for key, spec in RECEIVERS.items()}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id in self.imports:
                    owner = self.imports[node.value.id]
                    if isinstance(owner.node, ast.ClassDef):
                        self._check_member(owner, node)
                receiver = receivers.get(ast.unparse(node.value))
                if receiver is not None:
                    self._check_member(receiver, node)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in self.imports
            ):
                self._check_call_of_import(node, self.imports[node.func.id])
        return self

    def _fail(self, line: int, message: str) -> None:
        self.failures.append(f"vllm_engine.py:{line}: {message}")

    def _check_imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "vllm" for a in node.names):
                self._fail(node.lineno, "use `from vllm.x import Name` so the names can be checked")
            if not isinstance(node, ast.ImportFrom) or (node.module or "").split(".")[0] != "vllm":
                continue
            module = node.module or ""
            if self.wheel.module(module) is None:
                self._fail(node.lineno, f"module {module} does not exist in the pinned vLLM")
                continue
            for alias in node.names:
                definition = self.wheel.resolve(module, alias.name)
                if definition is None:
                    self._fail(node.lineno, f"{module} has no {alias.name} in the pinned vLLM")
                else:
                    self.imports[alias.asname or alias.name] = definition
                    self.checked.add(f"import {module}.{alias.name}")

    def _check_call_of_import(self, call: ast.Call, definition: Definition) -> None:
        node = definition.node
        if isinstance(node, ast.ClassDef):
            self._check_arguments(f"{definition.name}()", call, self.wheel.constructor(definition))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            signature = Signature.of(node, bound=False)
            self._check_arguments(f"{definition.name}()", call, signature)
            self._check_call_context(f"{definition.name}()", call, signature)

    def _check_member(self, cls: Definition, attribute: ast.Attribute) -> None:
        label = f"{cls.name}.{attribute.attr}"
        member = self.wheel.members(cls).get(attribute.attr)
        if member is None:
            self._fail(attribute.lineno, f"{label} does not exist in the pinned vLLM")
            return
        parent = self.parents.get(attribute)
        if isinstance(parent, ast.Call) and parent.func is attribute:
            self.checked.add(f"{label}()")
            if member.kind == "property":
                self._fail(attribute.lineno, f"{label} is a property in the pinned vLLM: do not call it")
            elif isinstance(member.node, ast.FunctionDef | ast.AsyncFunctionDef):
                signature = Signature.of(member.node, bound=member.kind != "staticmethod")
                self._check_arguments(label + "()", parent, signature)
                self._check_call_context(label + "()", parent, signature)
            return
        self.checked.add(label)
        is_method = member.kind in {"method", "classmethod", "staticmethod"}
        if isinstance(parent, ast.Call) and attribute in parent.args and is_method:
            # A method handed over as a callable; asyncio.to_thread(f, *args, **kwargs) calls it here.
            assert isinstance(member.node, ast.FunctionDef | ast.AsyncFunctionDef)
            if _callee(parent) == "to_thread" and parent.args[0] is attribute:
                signature = Signature.of(member.node, bound=member.kind != "staticmethod")
                forwarded = ast.Call(func=attribute, args=parent.args[1:], keywords=parent.keywords)
                ast.copy_location(forwarded, parent)
                self.checked.add(f"{label}()")
                self._check_arguments(label + "()", forwarded, signature)
                if signature.is_async:
                    self._fail(
                        attribute.lineno, f"{label} is async in the pinned vLLM: to_thread cannot run it"
                    )
        elif is_method:
            self._fail(attribute.lineno, f"{label} is a method in the pinned vLLM: call it")

    def _check_arguments(self, label: str, call: ast.Call, signature: Signature) -> None:
        self.checked.add(label)
        counted = not signature.var_positional and not any(isinstance(a, ast.Starred) for a in call.args)
        if counted and len(call.args) > len(signature.positional):
            self._fail(
                call.lineno,
                f"{label} takes {len(signature.positional)} positional arguments, the engine passes "
                f"{len(call.args)}",
            )
        for keyword in call.keywords:
            if keyword.arg is None:  # **mapping: its keys are checked where the engine builds them
                continue
            self.checked.add(f"{label[:-2]}({keyword.arg}=)")
            if keyword.arg not in signature.keywords and not signature.var_keyword:
                self._fail(call.lineno, f"{label} has no parameter {keyword.arg!r} in the pinned vLLM")

    def _check_call_context(self, label: str, call: ast.Call, signature: Signature) -> None:
        parent = self.parents.get(call)
        awaited = isinstance(parent, ast.Await)
        scheduled = isinstance(parent, ast.Call) and call in parent.args and _callee(parent) in SCHEDULERS
        if signature.is_async_generator:
            if awaited:
                self._fail(call.lineno, f"{label} is an async generator in the pinned vLLM: iterate it")
        elif signature.is_async:
            if not (awaited or scheduled):
                self._fail(call.lineno, f"{label} is a coroutine in the pinned vLLM: await or schedule it")
        elif awaited:
            self._fail(call.lineno, f"{label} is synchronous in the pinned vLLM: do not await it")


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


@pytest.fixture(scope="session")
def engine_tree() -> ast.Module:
    return ast.parse(ENGINE_PATH.read_text(), filename=str(ENGINE_PATH))


@pytest.fixture(scope="session")
def usage(wheel: WheelSource, engine_tree: ast.Module) -> EngineUsage:
    return EngineUsage(wheel, engine_tree).run()


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_the_wheel_is_the_pinned_release(wheel: WheelSource, pinned_version: str) -> None:
    assert wheel.metadata_version() == pinned_version


def test_the_engine_module_imports_no_vllm_at_import_time(engine_tree: ast.Module) -> None:
    # Module-level code (including if / try blocks) must not import vLLM: the module is imported on
    # CPU-only machines, and importing vLLM initialises CUDA and torch.
    offending = [
        statement.lineno
        for statement in _top_level(engine_tree.body)
        if (isinstance(statement, ast.ImportFrom) and (statement.module or "").split(".")[0] == "vllm")
        or (
            isinstance(statement, ast.Import) and any(a.name.split(".")[0] == "vllm" for a in statement.names)
        )
    ]
    assert not offending, f"vllm imported at module level on lines {offending}"


def test_every_vllm_name_the_engine_uses_exists_with_that_shape(usage: EngineUsage) -> None:
    assert not usage.failures, "the engine does not match the pinned vLLM API:\n" + "\n".join(usage.failures)


def test_the_checks_cover_the_engines_core_vllm_api(usage: EngineUsage, engine_tree: ast.Module) -> None:
    # Guards the derivation itself: a parser change that checked nothing would pass the test above.
    missing = sorted(CORE_API - usage.checked)
    assert not missing, f"not checked (renamed in the engine, or the analysis missed it): {missing}"
    imported = {
        f"import {node.module}.{alias.name}"
        for node in ast.walk(engine_tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vllm")
        for alias in node.names
    }
    assert imported and imported <= usage.checked


def test_every_receiver_in_the_table_is_used_by_the_engine(engine_tree: ast.Module) -> None:
    # RECEIVERS relies on the engine's variable names; a rename must update the table, not skip checks.
    used = {ast.unparse(node.value) for node in ast.walk(engine_tree) if isinstance(node, ast.Attribute)}
    assert not sorted(set(RECEIVERS) - used), f"no longer used in the engine: {sorted(set(RECEIVERS) - used)}"


def test_the_finish_reasons_the_engine_maps_are_vllms(wheel: WheelSource, engine_tree: ast.Module) -> None:
    mapper = next(
        n for n in ast.walk(engine_tree) if isinstance(n, ast.FunctionDef) and n.name == "_finish_reason"
    )
    mapped = {
        str(case.pattern.value.value)
        for node in ast.walk(mapper)
        if isinstance(node, ast.Match)
        for case in node.cases
        if isinstance(case.pattern, ast.MatchValue) and isinstance(case.pattern.value, ast.Constant)
    }
    definition = wheel.resolve("vllm.v1.engine", "FINISH_REASON_STRINGS")
    assert definition is not None and isinstance(definition.node, ast.Assign)
    vllm_reasons = set(ast.literal_eval(definition.node.value))
    assert {"stop", "length", "abort"} <= mapped
    assert mapped <= vllm_reasons, f"not finish reasons of the pinned vLLM: {sorted(mapped - vllm_reasons)}"


def test_generation_config_defaults_are_sampling_params(wheel: WheelSource, engine_tree: ast.Module) -> None:
    # The engine passes these keys to SamplingParams(**values); they come from get_diff_sampling_param.
    assignment = next(
        n
        for n in ast.walk(engine_tree)
        if isinstance(n, ast.Assign)
        and any(getattr(t, "id", "") == "GENERATION_CONFIG_KEYS" for t in n.targets)
    )
    keys = {
        n.value
        for n in ast.walk(assignment.value)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    assert keys
    sampling = wheel.constructor(wheel.klass("vllm.sampling_params:SamplingParams"))
    assert keys <= sampling.keywords, f"not SamplingParams fields: {sorted(keys - sampling.keywords)}"
    model_config = wheel.klass("vllm.config.model:ModelConfig")
    method = wheel.members(model_config)["get_diff_sampling_param"].node
    produced = {n.value for n in ast.walk(method) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert keys <= produced, f"never produced by get_diff_sampling_param: {sorted(keys - produced)}"


def test_abort_by_request_id_ends_the_stream_with_an_abort_output(wheel: WheelSource) -> None:
    # Engine.abort promises a stream that ends with CANCELLED: AsyncLLM.abort(external id) must hand
    # the waiting consumer a final output with finish reason ABORT, not just drop the request.
    processor = wheel.klass("vllm.v1.engine.output_processor:OutputProcessor")
    abort = wheel.members(processor)["abort_requests"].node
    assert any(
        isinstance(n, ast.keyword)
        and n.arg == "finish_reason"
        and ast.unparse(n.value) == "FinishReason.ABORT"
        for n in ast.walk(abort)
    ), "OutputProcessor.abort_requests no longer emits a final ABORT output"


def test_structured_outputs_are_the_sampling_params_field(wheel: WheelSource) -> None:
    # vLLM before 0.11 used SamplingParams(guided_decoding=GuidedDecodingParams(...)).
    fields = wheel.constructor(wheel.klass("vllm.sampling_params:SamplingParams")).keywords
    assert "structured_outputs" in fields and "guided_decoding" not in fields
    assert wheel.resolve("vllm.sampling_params", "GuidedDecodingParams") is None

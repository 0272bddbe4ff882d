"""Board code type-checked against the ESP8266 MicroPython API, not CPython's.

    python -m mpseal_tools.check.board_api            # every board module
    python -m mpseal_tools.check.board_api FILE ...   # just these files

The unix port that runs our tests is not the chip: code that passes there can
still call something the ESP8266 build lacks. This check runs pyright over
shared/mpseal and firmware/ with ONLY the MicroPython stubs in scope (the
micropython-esp8266-stubs package, plus micropython-stdlib-stubs cut down to
what the firmware has), so a misspelled `WLAN.conect` or a CPython-only
`os.makedirs` fails with file and line. It also checks that the unix side of
the hardware seam accepts every call the ESP8266 side accepts
(board_api_seam.py). See docs/board-api-check.md.
"""
import argparse
import ast
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys

from mpseal_tools.check import board_api_seam

from mpseal_tools.paths import BOARD_API_DATA, REPO_ROOT as TOOL_REPO

FIRMWARE_FACTS = os.path.join(BOARD_API_DATA, "esp8266_firmware.json")
STUB_PACKAGES = ("micropython-esp8266-stubs", "micropython-stdlib-stubs")
BUILD_SUBDIR = os.path.join("build", "board_api_check")
BOARD_DIRS = (os.path.join("shared", "mpseal"), "firmware")
IMPORT_ROOTS = ("shared", "firmware")
# CPython-only modules, kept out by structure: each is one side of a seam and
# never copied to a board. Anything else under BOARD_DIRS is board code.
NOT_BOARD = {
    "shared/mpseal/aes_openssl.py": "OpenSSL side of the crypto seam (aes.py imports it only where cryptolib is missing)",
    "shared/mpseal/aes_pycryptodome.py": "second CPython backend of the crypto seam (tests compare it with aes_openssl)",
    "firmware/hw_unix*.py": "unix-port side of the hardware seam (hw_unix.py is mirrored against hw_esp8266 instead, see board_api_seam)",
}


def not_board_reason(rel):
    for pattern, reason in NOT_BOARD.items():
        if fnmatch.fnmatchcase(rel, pattern):
            return reason
    return None
FULL_PREFIX = "_mpseal_cpython_"  # where the uncut stdlib stub of a narrowed module is kept
IGNORE_RE = re.compile(r"#\s*(type|pyright):\s*ignore\b(\[[^\]]*\])?")
PYRIGHT_TIMEOUT_S = 120


class CheckError(Exception):
    """The check could not run (missing stubs, pyright broken): not a finding."""


class Finding:
    def __init__(self, path, line, message, rule="board-api"):
        self.path = path
        self.line = line
        self.message = message
        self.rule = rule

    def __str__(self):
        return "%s:%d: %s [%s]" % (self.path, self.line, self.message, self.rule)


# ---------------------------------------------------------------- stub tree


def _stub_files():
    """Yields (distribution, relative path, absolute path) of every stub file."""
    for name in STUB_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise CheckError("%s is not installed: run 'make venv' (it is in pyproject's dev extra)" % name)
        for f in dist.files or ():
            rel = str(f)
            if rel.endswith(".pyi") or rel == "stdlib/VERSIONS":
                yield name, rel, str(f.locate())


def _stamp(facts_text):
    h = hashlib.sha256(facts_text.encode())
    for name in STUB_PACKAGES:
        try:
            h.update((name + importlib.metadata.version(name)).encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    with open(__file__, "rb") as f:  # a change to the narrowing code rebuilds too
        h.update(f.read())
    return h.hexdigest()


def assemble_stubs(out_dir):
    """Builds out_dir/typeshed (stdlib: micropython-stdlib-stubs, narrowed) and
    out_dir/esp8266 (stubPath: micropython-esp8266-stubs + _mpy_shed). Cached
    by a stamp of the package versions and the firmware facts."""
    with open(FIRMWARE_FACTS) as f:
        facts_text = f.read()
    facts = json.loads(facts_text)
    stamp_path = os.path.join(out_dir, "stubs.stamp")
    stamp = _stamp(facts_text)
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return facts
    for sub in ("typeshed", "esp8266"):
        shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
    for dist, rel, src in _stub_files():
        if rel.startswith("stdlib/"):
            dest = os.path.join(out_dir, "typeshed", rel)
        elif rel.startswith("stubs/"):
            continue  # typeshed's third-party stubs (mypy-extensions): not on a board
        else:
            dest = os.path.join(out_dir, "esp8266", rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
    os.makedirs(os.path.join(out_dir, "typeshed", "stubs"), exist_ok=True)
    stdlib = os.path.join(out_dir, "typeshed", "stdlib")
    referenced = _names_stubs_use(out_dir, set(facts["members"]))
    for module, members in sorted(facts["members"].items()):
        _narrow(stdlib, module, set(members), referenced.get(module, set()))
    with open(stamp_path, "w") as f:
        f.write(stamp)
    return facts


def _names_stubs_use(out_dir, modules):
    """{module: names other stub files import from it}: those stay in the cut
    module so the stubs themselves keep their types (os.PathLike, io.FileIO)."""
    used = {}
    for base, _dirs, files in os.walk(out_dir):
        for name in files:
            if not name.endswith(".pyi"):
                continue
            try:
                tree = ast.parse(open(os.path.join(base, name), encoding="utf-8").read())
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module in modules and not node.level:
                    used.setdefault(node.module, set()).update(a.name for a in node.names if a.name != "*")
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                    used.setdefault(node.value.id, set()).add(node.attr)
    return used


def _top_level_names(tree):
    names = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
            elif isinstance(node, ast.If):  # `if sys.version_info >= ...:` blocks
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return names


def _narrow(stdlib, module, members, referenced):
    """Moves the full stub of `module` aside and puts a stub in its place that
    re-exports only what the firmware has (keeping the typed signatures)."""
    package = os.path.join(stdlib, module, "__init__.pyi")
    path = package if os.path.exists(package) else os.path.join(stdlib, module + ".pyi")
    full = FULL_PREFIX + module
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(stdlib, full + ".pyi"), "w", encoding="utf-8") as f:
        f.write(text)
    defined = _top_level_names(ast.parse(text))
    keep = members | (referenced & defined) | {n for n in defined if n.startswith("_") and not n.startswith("__")}
    lines = [
        "# Cut by mpseal board_api_check to what the ESP8266 firmware has",
        "# (tools/board_api_check/esp8266_firmware.json); the full stub is %s." % full,
        "from _typeshed import Incomplete",
    ]
    for name in sorted(keep):
        if name in defined:
            lines.append("from %s import %s as %s" % (full, name, name))
        else:  # on the chip, but not in the typed stub: at least the name exists
            lines.append("%s: Incomplete" % name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(stdlib, "VERSIONS"), "a") as f:
        f.write("%s: 3.0-\n" % full)


def board_modules_allowed(facts, out_dir):
    """Top-level module names board code may import: what the ESP8266 stub
    package ships, the narrowed stdlib modules, and listed extras."""
    allowed = set(facts["members"]) | set(facts.get("extra_board_modules", ()))
    for name in os.listdir(os.path.join(out_dir, "esp8266")):
        if name.endswith(".pyi"):
            allowed.add(name[:-4])
        elif not name.startswith("_") and os.path.isdir(os.path.join(out_dir, "esp8266", name)):
            allowed.add(name)
    allowed.discard("__builtins__")
    return allowed


# ---------------------------------------------------------------- board code


def board_files(root):
    """Relative paths of board modules under root (sorted), without NOT_BOARD."""
    found = []
    for top in BOARD_DIRS:
        for base, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(base, name), root).replace(os.sep, "/")
                    if not not_board_reason(rel):
                        found.append(rel)
    return sorted(found)


def local_modules(root):
    names = set()
    for top in IMPORT_ROOTS:
        folder = os.path.join(root, top)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith(".py"):
                    names.add(name[:-3])
                elif os.path.isfile(os.path.join(folder, name, "__init__.py")):
                    names.add(name)
    return names


def _guarded_by_import_error(node, parents):
    """True for an import inside `try:` whose handler catches ImportError: the
    documented way to probe for a module (the compat seam)."""
    child = node
    for parent in parents:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(k, ast.Name) and k.id in ("ImportError", "Exception") for k in kinds):
                    return True
        child = parent
    return False


def check_imports(root, rel, allowed):
    """Imports of modules the ESP8266 port lacks (typing, pathlib, logging...):
    the stdlib stubs carry some of them only so the stubs type-check."""
    findings = []
    tree = ast.parse(open(os.path.join(root, rel), encoding="utf-8").read(), rel)
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        chain, up = [], parents.get(node)
        while up is not None:
            chain.append(up)
            up = parents.get(up)
        for name in names:
            top = name.split(".")[0]
            ok = top in allowed and (name == top or top not in _NARROWED_PACKAGES)
            if not ok and not _guarded_by_import_error(node, chain):
                findings.append(Finding(rel, node.lineno, 'module "%s" does not exist on the ESP8266 port' % name, "board-import"))
    return findings


_NARROWED_PACKAGES = {"collections", "os", "sys", "json"}  # their CPython submodules (collections.abc) are not on the chip


def check_ignores(root, rel):
    """Every `# type: ignore` / `# pyright: ignore` must say why, in a comment
    after it on the same line. Returns (count, findings)."""
    count, findings = 0, []
    for number, line in enumerate(open(os.path.join(root, rel), encoding="utf-8"), 1):
        match = IGNORE_RE.search(line)
        if match:
            count += 1
            if not re.search(r"#\s*\w+.*\w", line[match.end():]):
                findings.append(Finding(rel, number, "ignore without a reason: add '  # why' after it", "board-ignore"))
    return count, findings


# ---------------------------------------------------------------- pyright


def write_config(out_dir, root, files):
    env = os.path.join(out_dir, "no_cpython_env")
    # An empty environment: without one pyright asks `python` for its
    # sys.path and CPython's own library (pathlib, logging) would resolve.
    os.makedirs(os.path.join(env, "lib", "python3.11", "site-packages"), exist_ok=True)
    # pyright drops absolute paths from "include" (with only a log line), so
    # everything is given relative to the config file's folder.
    config = {
        "include": [os.path.relpath(os.path.join(root, f), out_dir) for f in files],
        "ignore": ["typeshed", "esp8266"],  # the assembled stubs: not ours to report on
        "extraPaths": [os.path.join(out_dir, "board_view")] + [os.path.join(root, d) for d in IMPORT_ROOTS],
        "typeshedPath": os.path.join(out_dir, "typeshed"),
        "stubPath": os.path.join(out_dir, "esp8266"),
        "venvPath": out_dir,
        "venv": "no_cpython_env",
        "pythonVersion": "3.11",
        # "All": sys.platform is not a fixed string, so code under
        # `if sys.platform == "esp8266":` is checked, not skipped as unreachable.
        "pythonPlatform": "All",
        "typeCheckingMode": "standard",
        "reportMissingModuleSource": "none",  # stubs without source are the point
        "enableTypeIgnoreComments": True,
        "reportUnnecessaryTypeIgnoreComment": "error",
        # None-safety of our own attributes (`self.sock = None` until opened)
        # is not the chip's API, and the unix-port tests run those paths.
        "reportOptionalMemberAccess": "none",
        "reportOptionalSubscript": "none",
        "reportOptionalIterable": "none",
        "reportOptionalCall": "none",
        "reportOptionalOperand": "none",
    }
    path = os.path.join(out_dir, "pyrightconfig.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return path


def run_pyright(config_path, expected_files):
    cmd = [sys.executable, "-m", "pyright", "--outputjson", "--project", config_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PYRIGHT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CheckError("pyright took longer than %d s" % PYRIGHT_TIMEOUT_S)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise CheckError(
            "pyright did not run (exit %d): %s -- it needs Node.js ('node' on PATH, or network access "
            "for its nodeenv download); run 'make venv'" % (proc.returncode, (proc.stderr or proc.stdout).strip()[-400:])
        )
    analyzed = report.get("summary", {}).get("filesAnalyzed", 0)
    if analyzed < expected_files:  # a config slip must not pass as "no problems"
        raise CheckError("pyright analysed %d files, expected at least %d" % (analyzed, expected_files))
    return report.get("generalDiagnostics", [])


_LOCAL_ATTRIBUTE = re.compile(r'^Cannot (access|assign to) attribute "\w+" for class "(\w+)\*?"')


_NONE_ONLY_ARGUMENT = re.compile(r'^Argument of type "[^\n]* \| None" cannot be assigned[^\n]*\n(.*\n)*?\s*Type "None" is not assignable to type')


def local_classes(root, files):
    """Classes defined in board code (not in the stubs)."""
    names = set()
    for rel in files:
        tree = ast.parse(open(os.path.join(root, rel), encoding="utf-8").read())
        names.update(n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef))
    return names


def pyright_findings(diagnostics, root, included, seam_lines, own_classes=()):
    findings = []
    for d in diagnostics:
        if d.get("severity") not in ("error", "warning") or d.get("file") not in included:
            continue
        if _NONE_ONLY_ARGUMENT.search(d["message"]):
            # `X | None` where only the None member fails: None-safety of our
            # own state (like the Optional rules switched off above)
            continue
        local = _LOCAL_ATTRIBUTE.match(d["message"])
        if local and local.group(2) in own_classes and d["file"] not in seam_lines:
            # attributes our own classes set dynamically (setattr, assigned by
            # another module): not the ESP8266 API; the unix-port tests run them
            continue
        line = d["range"]["start"]["line"] + 1
        message = d["message"].replace("\n", "\n    ")
        path = os.path.relpath(d["file"], root).replace(os.sep, "/")
        if d["file"] in seam_lines:  # the generated mirror check: point at the unix code
            where = seam_lines[d["file"]].get(line)
            if where:
                path, line, what = where
                message = "%s: %s" % (what, message)
        findings.append(Finding(path, line, message, d.get("rule") or "pyright"))
    return findings


# ---------------------------------------------------------------- main


class Result:
    def __init__(self):
        self.files = []
        self.findings = []
        self.ignores = 0
        self.seam_names = 0


def _locate(path, root):
    """A file named on the command line: absolute, under --root, or under cwd."""
    if os.path.isabs(path) or not os.path.exists(os.path.join(root, path)):
        return os.path.abspath(path)
    return os.path.join(root, path)


def check(root, files=None, out_dir=None):
    """Runs the whole check over `root` (a checkout); returns a Result."""
    root = os.path.abspath(root)
    out_dir = os.path.abspath(out_dir or os.path.join(root, BUILD_SUBDIR))
    os.makedirs(out_dir, exist_ok=True)
    facts = assemble_stubs(out_dir)
    allowed = board_modules_allowed(facts, out_dir) | local_modules(root)
    result = Result()
    everything = board_files(root)
    if files:
        result.files = [os.path.relpath(_locate(f, root), root).replace(os.sep, "/") for f in files]
    else:
        result.files = everything
    for rel in result.files:
        if not os.path.isfile(os.path.join(root, rel)):
            raise CheckError("no such file: %s" % rel)
        if not_board_reason(rel):
            raise CheckError("%s is not board code: %s" % (rel, not_board_reason(rel)))
        result.findings += check_imports(root, rel, allowed)
        count, findings = check_ignores(root, rel)
        result.ignores += count
        result.findings += findings
    included = list(result.files)
    seam_lines = {}
    board_view = os.path.join(out_dir, "board_view")
    shutil.rmtree(board_view, ignore_errors=True)
    os.makedirs(board_view)
    seam = board_api_seam.generate(root, out_dir, board_view, whole_tree=not files)
    if seam is not None:
        included.append(seam.check_file)
        seam_lines[seam.check_file] = seam.lines
        result.seam_names = seam.names
        result.findings += [Finding(path, line, message, "seam-overload") for path, line, message in seam.findings]
    config = write_config(out_dir, root, included)
    checked = {os.path.join(root, f) for f in result.files} | set(seam_lines)
    own = local_classes(root, everything)
    result.findings += pyright_findings(run_pyright(config, len(included)), root, checked, seam_lines, own)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="board_api_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="board modules to check (default: all of shared/mpseal and firmware/)")
    parser.add_argument("--root", default=os.getcwd(), help="checkout to check (default: the current folder)")
    args = parser.parse_args(argv)
    try:
        result = check(args.root, args.files or None)
    except CheckError as exc:
        print("mpseal: board API check could not run: %s" % exc, file=sys.stderr)
        return 2
    for finding in result.findings:
        print(finding)
    print(
        "board API check (ESP8266 MicroPython %s stubs): %d board modules, %d seam names mirrored, %d ignores: %s"
        % (
            importlib.metadata.version(STUB_PACKAGES[0]),
            len(result.files),
            result.seam_names,
            result.ignores,
            "%d problems" % len(result.findings) if result.findings else "OK",
        )
    )
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())

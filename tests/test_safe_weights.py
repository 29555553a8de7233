"""Safe weights (issue 13, build item "Safe weights"; findings 3, 4, 5 and 9).

The promise, stated in `restorekit/zoo.py`'s docstring: a weights file is data, never code (`.safetensors`;
`.pth`/`.pt` only through `torch.load(weights_only=True)`; `.mat` through scipy/h5py; anything else refused);
a zoo model loads only with a sha256 in its card that matches the bytes loaded; and every bad model argument
(truncated or corrupt files, pickles, wrong shapes, bad cards, hash mismatches) ends in one line naming the
file and a non-zero exit, never a traceback or partial output.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_helpers import save_zoo_model

from restorekit import zoo
from restorekit.cli import main
from restorekit.errors import ModelError
from restorekit.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

DNCNN = {"in_channels": 1, "depth": 3, "features": 8}  # a tiny grey DnCNN: the architecture detectors know it


@pytest.fixture
def zoo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, isolated user zoo (the bundled one hidden)."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(folder))
    monkeypatch.setenv("RESTOREKIT_BUNDLED", "none")
    return folder


def dncnn_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create_model("dncnn", **DNCNN).state_dict()


def carded(folder: Path, name: str = "tiny", *, card: Callable[[dict], object] | None = None,
           card_json: Callable[[dict], object] | None = None, weights: Callable[[bytes], bytes] | None = None) -> Path:
    """A zoo-style DnCNN (fp16 safetensors + card with sha256), then its card edited in place (`card`) or
    replaced by other JSON (`card_json`), and its bytes edited."""
    path = save_zoo_model(folder, name, "dncnn", DNCNN, family="dncnn", levels=(25, 25), curve=False)
    data = json.loads(path.with_suffix(".json").read_text())
    if card is not None:
        card(data)
    path.with_suffix(".json").write_text(json.dumps(card_json(data) if card_json else data))
    if weights is not None:
        path.write_bytes(weights(path.read_bytes()))
    return path


def image_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(24 * 32).reshape(24, 32) % 251).astype(np.uint8)).save(folder / "a.png")
    return folder / "a.png"


# ---------------------------------------------------------------------------------------------------
# A malicious pickle is never executed (build item; finding 9: refused in one line of ours)
# ---------------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs code: it creates `marker` (what an attacker's file would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


class SystemPayload(Payload):
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_files(folder: Path, marker: Path) -> list[Path]:
    """The same attack in each container torch.load accepts: zip (default), legacy tar-less, raw pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model.0.weight": torch.zeros(8, 1, 3, 3), "trap": Payload(marker)}
    torch.save(state, folder / "zip.pth")
    torch.save({"w": SystemPayload(marker)}, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    (folder / "raw.pt").write_bytes(pickle.dumps({"params": {"w": Payload(marker)}}, protocol=5))
    return [folder / "zip.pth", folder / "legacy.pth", folder / "raw.pt"]


def test_the_payload_is_live_when_unpickled_unsafely(tmp_path):
    """The control: without weights_only the crafted file does run code, so the tests below are not vacuous."""
    marker = tmp_path / "PWNED"
    zip_file = malicious_files(tmp_path / "files", marker)[0]
    torch.load(zip_file, weights_only=False)
    assert marker.exists()


def test_a_malicious_pickle_is_refused_by_every_entry_point_without_running(zoo_dir, tmp_path, capsys):
    """issue 13, build item "Safe weights" and finding 9: zoo.read_weights, zoo.load_model, `zoo import`,
    `restore --model FILE` and `eval --model FILE` all refuse it in one line; the payload never runs."""
    marker = tmp_path / "PWNED"
    image = image_file(tmp_path / "images")
    for path in malicious_files(tmp_path / "files", marker):
        for load in (zoo.read_weights, zoo.load_model):
            with pytest.raises(ModelError) as refused:
                load(str(path))
            message = str(refused.value)
            assert message.startswith(str(path)) and "\n" not in message
            assert "weights_only" not in message  # never torch's hint to turn the protection off
        commands = [["zoo", "import", str(path), "--name", "evil", "--no-measure"],
                    ["restore", str(image), "--model", str(path), "-o", str(tmp_path / "out")],
                    ["eval", "--model", str(path), "--dataset", str(image.parent), "--task", "denoise",
                     "--level", "25"]]
        for command in commands:
            assert main(command) == 2, command
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"restorekit: error: {path}: "), (command, lines)
            assert "weights_only" not in lines[0]
    message = str(pytest.raises(ModelError, zoo.read_weights, tmp_path / "files" / "zip.pth").value)
    assert "refused: the file holds pickled Python objects (" in message and "Convert it to .safetensors" in message
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (zoo_dir / "evil.json").exists()


def test_the_process_refuses_it_even_when_torch_is_told_to_skip_weights_only(tmp_path):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns weights_only off for torch.load calls that do not ask for it:
    ours always ask, so the environment cannot re-open the hole (build item "Safe weights")."""
    marker = tmp_path / "PWNED"
    path = malicious_files(tmp_path / "files", marker)[0]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "RESTOREKIT_BUNDLED": "none",
           "RESTOREKIT_WEIGHTS": str(tmp_path / "zoo"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "restorekit", "restore", str(image_file(tmp_path / "images")),
                           "--model", str(path), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "refused: the file holds pickled Python objects" in lines[0]
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_matlab_files_yield_only_numeric_arrays(zoo_dir, tmp_path):
    """Build item "Safe weights": `.mat` reading cannot execute code. scipy/h5py parse arrays and never
    unpickle; a MATLAB class object or an HDF5 object/reference dataset comes back as its numeric fields
    at most (the object's class is never looked up), and a file of such things is refused in one line."""
    import h5py
    import scipy.io
    from scipy.io.matlab import MatlabObject

    from restorekit.models._matconvnet import read_mat

    obj = MatlabObject(np.array([(np.ones((2, 2)), "x")], dtype=[("w", "O"), ("name", "O")]), classname="evil.Loader")
    scipy.io.savemat(tmp_path / "object.mat", {"net": obj})
    state = read_mat(tmp_path / "object.mat")
    assert list(state) == ["net.w"] and all(isinstance(v, torch.Tensor) for v in state.values())

    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as handle:
        handle.create_dataset("names", data=np.array([b"posix.system"], dtype=object))
        handle["handle"] = handle["names"].ref
        handle["handle"].attrs["MATLAB_class"] = np.bytes_("function_handle")
    with pytest.raises(ModelError) as refused:
        zoo.load_model(str(tmp_path / "v73.mat"))
    message = str(refused.value)
    assert message == f"{tmp_path / 'v73.mat'}: no numeric arrays in this MATLAB file"


# ---------------------------------------------------------------------------------------------------
# Finding 3: the zoo's sha256 is required, checked over the bytes loaded, and reported
# ---------------------------------------------------------------------------------------------------


def test_a_zoo_card_without_sha256_is_refused_with_how_to_fix(zoo_dir, tmp_path, capsys):
    """issue 13, finding 3: no sha256 no longer disables the check; restore, zoo show (exit 1) and zoo list
    all say so, and the fix the message gives (add the file's sha256) works."""
    weights = carded(zoo_dir, card=lambda c: c.pop("sha256"))
    image = image_file(tmp_path / "images")
    assert main(["restore", str(image), "--model", "tiny", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny.json has no sha256 for tiny.safetensors" in err[0] and "zoo import" in err[0]
    assert not (tmp_path / "out").exists()
    assert main(["zoo", "show", "tiny"]) == 1
    assert "weights: no sha256" in capsys.readouterr().out
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["weights"] == "no sha256"
    card = json.loads(weights.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps({**card, "sha256": zoo.sha256(weights)}))
    assert main(["restore", str(image), "--model", "tiny", "-o", str(tmp_path / "out")]) == 0


def test_zeroed_weights_with_a_stale_hash_do_not_restore(tiny_zoo, tmp_path, capsys):
    """issue 13, finding 3: weights replaced by zeros (a valid file of the right shapes) under the old card
    are refused through the CLI, with no output written; `zoo show` and `zoo list` report the mismatch."""
    from safetensors.torch import load_file, save_file

    weights = tiny_zoo / "tiny-dncnn.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(weights))
    image = image_file(tmp_path / "images")
    assert main(["restore", str(image), "--model", "tiny-dncnn", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 does not match its model card" in err[0]
    assert not (tmp_path / "out").exists()
    assert main(["zoo", "show", "tiny-dncnn", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["weights"] == "sha256 mismatch"
    assert main(["zoo", "list"]) == 0
    listing = capsys.readouterr().out
    assert "sha256 mismatch" in listing and "tiny-dncnn: will not load" in listing


def test_the_hash_is_taken_over_the_bytes_that_are_parsed(zoo_dir, monkeypatch):
    """issue 13, finding 3: the file is read once, hashed and parsed from the same bytes, so a file
    swapped right after the check cannot slip in (the model holds the verified weights)."""
    from safetensors.torch import load

    weights = carded(zoo_dir)
    good = weights.read_bytes()
    real_read_bytes = Path.read_bytes

    def read_then_swap(self: Path) -> bytes:
        data = real_read_bytes(self)
        if self == weights:
            weights.write_bytes(good[:-8] + bytes(8))  # the attacker's swap, right after our read
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    model = zoo.load_model("tiny")
    assert real_read_bytes(weights) != good  # the swap happened
    for key, value in load(good).items():
        assert torch.equal(model.module.state_dict()[key], value.float()), key


def test_a_file_given_by_path_follows_the_documented_rule(zoo_dir, tmp_path):
    """issue 13, finding 3, the rule for paths (zoo.py docstring): a card beside a file given by path is
    checked when it has a sha256 and trusted like the path when it has none (the trainer's final.json)."""
    trusted = carded(tmp_path / "out", "final", card=lambda c: c.pop("sha256"))
    assert zoo.load_model(str(trusted)).card.name == "final"
    stale = carded(tmp_path / "other", "final", weights=lambda b: b[:-2] + b"\0\0")
    with pytest.raises(ModelError, match="sha256 does not match"):
        zoo.load_model(str(stale))


# ---------------------------------------------------------------------------------------------------
# Finding 5: one bad card breaks nothing else
# ---------------------------------------------------------------------------------------------------


def test_bad_cards_do_not_break_restoring_an_unrelated_model(tiny_zoo, tmp_path, capsys):
    """issue 13, finding 5: an unreadable card and one naming an unknown architecture are skipped with a
    warning each; `restore` of another model and `zoo list` (and so the server's list) still work."""
    (tiny_zoo / "broken.json").write_text("{not json")
    carded(tiny_zoo, "alien", card=lambda c: c.update(architecture="no_such_net"))
    image = image_file(tmp_path / "images")
    assert main(["restore", str(image), "--model", "tiny-dncnn", "-o", str(tmp_path / "out")]) == 0
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("restorekit: warning: skipping ") for w in warnings)
    assert "alien.json: unknown model 'no_such_net'" in warnings[0] and "broken.json: unreadable" in warnings[1]
    assert (tmp_path / "out" / "a.png").is_file()
    assert [e.card.name for e in zoo.entries()] == ["tiny-adafm", "tiny-dncnn"]


# ---------------------------------------------------------------------------------------------------
# Findings 4 and 9, fuzzed: every model argument path ends in one ModelError line naming the file
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bad model argument: `make(folder)` writes it (the folder is the user's zoo) and returns what is
    passed as --model; the one-line error must name `names` (a file) and contain `says`."""

    make: Callable[[Path], tuple[str, Path]]
    says: str


def _uncarded_safetensors(folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(dncnn_state(), str(folder / "plain.safetensors"))
    return folder / "plain.safetensors"


def _edited_safetensors(edit: Callable[[bytes], bytes]) -> Callable[[Path], tuple[str, Path]]:
    def make(folder: Path) -> tuple[str, Path]:
        path = _uncarded_safetensors(folder / "files")
        path.write_bytes(edit(path.read_bytes()))
        return str(path), path
    return make


def _truncated_safetensors(cut: Callable[[int, int], int]) -> Callable[[Path], tuple[str, Path]]:
    def make(folder: Path) -> tuple[str, Path]:
        path = _uncarded_safetensors(folder / "files")
        data = path.read_bytes()
        header = 8 + int.from_bytes(data[:8], "little")
        path.write_bytes(data[:cut(header, len(data))])
        return str(path), path
    return make


def _pth(state: object, *, edit: Callable[[bytes], bytes] | None = None, name: str = "w.pth",
         **save: object) -> Callable[[Path], tuple[str, Path]]:
    def make(folder: Path) -> tuple[str, Path]:
        path = folder / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state() if callable(state) else state, path, **save)
        if edit is not None:
            path.write_bytes(edit(path.read_bytes()))
        return str(path), path
    return make


def _raw(name: str, data: bytes) -> Callable[[Path], tuple[str, Path]]:
    def make(folder: Path) -> tuple[str, Path]:
        path = folder / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path), path
    return make


def _zoo_card(edit: Callable[[dict], object] | None = None, weights: Callable[[bytes], bytes] | None = None,
              *, by_path: bool = False, card_json: Callable[[dict], object] | None = None,
              ) -> Callable[[Path], tuple[str, Path]]:
    """A carded model installed in the zoo (by name) or beside a path, then its card/bytes edited; the
    error names the card (card problems) or the weights (file problems)."""
    def make(folder: Path) -> tuple[str, Path]:
        target = folder / "files" if by_path else folder
        path = carded(target, card=edit, card_json=card_json, weights=weights)
        return (str(path) if by_path else "tiny"), path
    return make


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda card: card.update({key: value})


def _argument(key: str, value: object) -> Callable[[dict], None]:
    return lambda card: card["arguments"].update({key: value})


def _drop(key: str) -> Callable[[dict], None]:
    return lambda card: card.pop(key)


def _wrong_shape_state() -> dict[str, torch.Tensor]:
    state = dncnn_state()
    state["model.2.bias"] = torch.zeros(7)  # detected as a DnCNN (weights' shapes), but a bias does not fit
    return state


def _flip(position: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        flipped = bytearray(data)
        flipped[position(len(data))] ^= 0xFF
        return bytes(flipped)
    return edit


def _directory(folder: Path) -> tuple[str, Path]:
    (folder / "files" / "dir.pth").mkdir(parents=True)
    return str(folder / "files" / "dir.pth"), folder / "files" / "dir.pth"


def _cut_card(folder: Path) -> tuple[str, Path]:
    path = carded(folder / "files")
    card = path.with_suffix(".json")
    card.write_text(card.read_text()[:30])
    return str(path), path


CARD, WEIGHTS = "card", "weights"  # which file a case's error must name
RANDOM = np.random.default_rng(13).bytes(400)

CASES: dict[str, tuple[Case, str]] = {
    # truncated / corrupt safetensors without a card (nothing to check a hash against: the format must fail)
    **{f"safetensors cut {label}": (Case(_truncated_safetensors(cut), "cannot read weights"), WEIGHTS)
       for label, cut in {"empty": lambda h, n: 0, "in the length": lambda h, n: 5, "after the length": lambda h, n: 8,
                          "in the header": lambda h, n: h // 2, "after the header": lambda h, n: h,
                          "in the data": lambda h, n: (h + n) // 2, "last byte": lambda h, n: n - 1}.items()},
    # truncated / corrupt .pth without a card
    **{f"pth cut at {label}": (Case(_pth(dncnn_state, edit=lambda b, c=cut: b[:c(len(b))]), "cannot read weights"),
                               WEIGHTS)
       for label, cut in {"0": lambda n: 0, "10": lambda n: 10, "64": lambda n: 64, "half": lambda n: n // 2,
                          "end of zip directory": lambda n: n - 22, "last byte": lambda n: n - 1}.items()},
    "pth zip signature flipped": (Case(_pth(dncnn_state, edit=_flip(lambda n: 0)), "cannot read weights"), WEIGHTS),
    "safetensors header length flipped": (Case(_edited_safetensors(_flip(lambda n: 7)), "cannot read weights"),
                                          WEIGHTS),
    "safetensors header brace flipped": (Case(_edited_safetensors(_flip(lambda n: 8)), "cannot read weights"),
                                         WEIGHTS),
    "carded safetensors byte flipped": (Case(_zoo_card(weights=_flip(lambda n: 7), by_path=True),
                                             "sha256 does not match"), WEIGHTS),
    "zoo weights byte flipped in the data": (Case(_zoo_card(weights=_flip(lambda n: n - 3)), "sha256 does not match"),
                                             WEIGHTS),
    "zoo weights truncated": (Case(_zoo_card(weights=lambda b: b[: len(b) // 2]), "sha256 does not match"), WEIGHTS),
    # random bytes under every suffix, and suffixes we do not read
    **{f"random bytes as {suffix}": (Case(_raw(f"random{suffix}", RANDOM), says), WEIGHTS)
       for suffix, says in {".safetensors": "cannot read weights", ".pth": "cannot read weights",
                            ".pt": "cannot read weights", ".mat": "not a readable MATLAB file",
                            ".bin": "not a weights file restorekit reads"}.items()},
    "empty .mat": (Case(_raw("empty.mat", b""), "MATLAB"), WEIGHTS),
    # pickles: code, foreign objects, wrong containers
    "pickled os.system": (Case(_pth(lambda: {"w": SystemPayload(Path("/nonexistent/x"))}), "pickled Python objects"),
                          WEIGHTS),
    "pickled whole nn.Module": (Case(_pth(lambda: create_model("dncnn", **DNCNN)), "pickled Python objects"), WEIGHTS),
    "pickled numpy array": (Case(_pth(lambda: {"w": np.zeros(3)}), "pickled Python objects"), WEIGHTS),
    "plain pickle, protocol 5": (Case(_raw("plain.pt", pickle.dumps({"w": 1}, protocol=5)), "not a tensors-only"),
                                 WEIGHTS),
    "a list of tensors": (Case(_pth(lambda: list(dncnn_state().values())), "not a state dict of tensors"), WEIGHTS),
    "a number beside the tensors": (Case(_pth(lambda: {**dncnn_state(), "epoch": 3}), "'epoch' is int"), WEIGHTS),
    "integer keys": (Case(_pth(lambda: {0: torch.zeros(3)}), "not a state dict of plain tensors"), WEIGHTS),
    "complex tensors": (Case(_pth(lambda: {k: v.to(torch.complex64) for k, v in dncnn_state().items()}),
                             "complex64"), WEIGHTS),
    "empty state dict": (Case(_pth(dict), "not a state dict of tensors"), WEIGHTS),
    "a directory named like weights": (Case(_directory, "no such weights file"), WEIGHTS),
    # wrong shapes
    "wrong-shape DnCNN .pth, no card": (Case(_pth(_wrong_shape_state), "model.2.bias is [7] in the file, [8]"),
                                        WEIGHTS),
    "unrecognisable tensors": (Case(_pth(lambda: {"conv.weight": torch.zeros(3)}), "could not recognise"), WEIGHTS),
    "NaN weights": (Case(_pth(lambda: {k: torch.full_like(v, float("nan")) for k, v in dncnn_state().items()}),
                         "NaN or infinite"), WEIGHTS),
    "card and weights disagree": (Case(_zoo_card(_argument("features", 16)), "the weights do not fit"), WEIGHTS),
    "card claims a huge width": (Case(_zoo_card(_argument("features", 100_000)), "the weights do not fit"), WEIGHTS),
    "card claims a negative width": (Case(_zoo_card(_argument("features", -4)), "cannot be built"), WEIGHTS),
    # cards: missing required fields, wrong types, extra keys, other JSON
    **{f"card without {key}": (Case(_zoo_card(_drop(key), by_path=True), f"{key}: Field required"), CARD)
       for key in ("name", "architecture", "task")},
    "card arguments not a dict": (Case(_zoo_card(_set("arguments", "depth=3"), by_path=True), "arguments:"), CARD),
    "card argument a string": (Case(_zoo_card(_argument("depth", "3")), "argument depth must be int, not str"), CARD),
    "card argument a bool for an int": (Case(_zoo_card(_argument("depth", True)), "argument depth must be int"), CARD),
    "card argument a float for an int": (Case(_zoo_card(_argument("features", 8.5)), "must be int"), CARD),
    "card argument unknown": (Case(_zoo_card(_argument("bogus", 1)), "takes no argument(s) bogus"), CARD),
    "card architecture unknown": (Case(_zoo_card(_set("architecture", "no_such_net"), by_path=True),
                                       "unknown model 'no_such_net'"), CARD),
    "card with an extra key": (Case(_zoo_card(_set("weights_url", "http://x"), by_path=True), "Extra inputs"), CARD),
    "card levels a string": (Case(_zoo_card(_set("levels", "15-75"), by_path=True), "levels"), CARD),
    "card JSON a list": (Case(_zoo_card(card_json=lambda c: [c], by_path=True), "Input should be a valid dictionary"), CARD),
    "card JSON a string": (Case(_zoo_card(card_json=lambda c: "dncnn", by_path=True), "invalid model card"), CARD),
    "card JSON truncated": (Case(_cut_card, "unreadable model card"), CARD),
    "card sha256 not a digest": (Case(_zoo_card(_set("sha256", "abc"), by_path=True), "64 hexadecimal digits"), CARD),
    "card sha256 a number": (Case(_zoo_card(_set("sha256", 123), by_path=True), "sha256"), CARD),
    "card sha256 of another file": (Case(_zoo_card(_set("sha256", "0" * 64)), "sha256 does not match"), WEIGHTS),
    "card without sha256 in the zoo": (Case(_zoo_card(_drop("sha256")), "has no sha256"), CARD),
    "card file a path outside the zoo": (Case(_zoo_card(_set("file", "../../etc/passwd"), by_path=True),
                                              "must be a plain file name"), CARD),
    "card file missing": (Case(_zoo_card(_set("file", "gone.safetensors")), "no such weights file"), WEIGHTS),
}


def _named_file(case_id: str, argument: str, weights: Path, folder: Path) -> str:
    """The file a case's error must start with."""
    names = CASES[case_id][1]
    if names == CARD:
        return str(weights.with_suffix(".json"))
    if case_id == "card file missing":
        return str(folder / "gone.safetensors")
    return argument if argument != "tiny" else str(weights)


@pytest.mark.parametrize("case_id", list(CASES))
def test_every_bad_model_argument_is_one_line_naming_the_file(case_id, zoo_dir):
    """issue 13, findings 4 and 9 and the fuzzing of model arguments: truncations, byte flips, pickles,
    wrong shapes, cards missing each field or of wrong types, sha256 problems, through `zoo.load_model`."""
    case, _ = CASES[case_id]
    argument, weights = case.make(zoo_dir)
    with pytest.raises(ModelError) as failed:
        zoo.load_model(argument)
    message = str(failed.value)
    assert "\n" not in message and "weights_only" not in message and "Traceback" not in message, message
    assert message.startswith(_named_file(case_id, argument, weights, zoo_dir)), message
    assert case.says in message, message


def test_the_cli_gives_one_line_exit_2_and_no_output(tmp_path):
    """issue 13, findings 3, 4 and 9 through the real process: a few of the fuzz cases as `restorekit
    restore --model ...` (in parallel), each exit 2 with one `restorekit: error:` line and no output folder."""
    image = image_file(tmp_path / "images")
    chosen = ["pth cut at half", "wrong-shape DnCNN .pth, no card", "card JSON a list", "card argument a string",
              "card without sha256 in the zoo"]  # a pickle: test_the_process_refuses_it_even_when_torch_is_told...
    running = {}
    for number, case_id in enumerate(chosen):
        folder = tmp_path / f"zoo{number}"  # each case its own user zoo
        folder.mkdir()
        argument, _ = CASES[case_id][0].make(folder)
        out = tmp_path / f"out{number}"
        command = [sys.executable, "-m", "restorekit", "restore", str(image), "--model", argument, "-o", str(out)]
        env = {**os.environ, "RESTOREKIT_WEIGHTS": str(folder), "RESTOREKIT_BUNDLED": "none", "OMP_NUM_THREADS": "1"}
        running[case_id] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=env), out)
    for case_id, (process, out) in running.items():
        _, stderr = process.communicate(timeout=120)
        lines = stderr.strip().splitlines()
        assert process.returncode == 2, (case_id, stderr)
        assert len(lines) == 1 and lines[0].startswith("restorekit: error: "), (case_id, stderr)
        assert CASES[case_id][0].says in lines[0], (case_id, lines[0])
        assert not out.exists(), case_id


def test_zoo_import_refuses_a_name_that_is_a_path(tmp_path, zoo_dir, capsys):
    """issue 13, finding 4 (fuzzing `zoo import`): --name becomes NAME.safetensors, so a path is one line,
    and nothing is written outside the zoo."""
    torch.save(dncnn_state(), tmp_path / "dncnn.pth")
    assert main(["zoo", "import", str(tmp_path / "dncnn.pth"), "--name", "../escaped", "--no-measure"]) == 2
    assert "must be a plain file name" in capsys.readouterr().err
    assert not (tmp_path / "escaped.safetensors").exists()

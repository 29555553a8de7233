"""`restorekit zoo list|show` and the tiny carded models the product tests share (`save_zoo_model`).

These tests build their own fp16 safetensors + card in tmp_path and point RESTOREKIT_WEIGHTS (the user's
zoo) at it, exactly as a trained model would be installed; RESTOREKIT_BUNDLED=none hides the bundled models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from zoo_helpers import save_zoo_model

from restorekit.cli import main
from restorekit.models import create_model
from restorekit.zoo import sha256


def test_zoo_list_json_has_the_documented_keys(tiny_zoo, capsys):
    assert main(["zoo", "list", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["tiny-adafm", "tiny-dncnn"]
    for card in cards:
        for key in ("name", "family", "task", "file", "sha256", "results"):
            assert card[key] is not None, key
        assert card["source"] == "user" and card["weights"] == "ok"  # issue 13, finding 3: the state is listed
        assert card["levels"] is not None
        assert len(card["sha256"]) == 64
    assert cards[0]["strength_curve"]["start"] == 15


def test_zoo_list_table_and_show(tiny_zoo, capsys):
    assert main(["zoo", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny-adafm" in table and "15..75" in table and "lambda(level)" in table
    assert main(["zoo", "show", "tiny-adafm"]) == 0
    shown = capsys.readouterr().out
    assert "adafm_net" in shown and "weights: ok" in shown and "tests: random weights" in shown


def test_zoo_list_names_a_specialists_one_degradation(tiny_zoo, capsys):
    """RED-Net Table 10's one-kernel models have no level range: the list says which degradation they are for."""
    from zoo_helpers import save_zoo_model

    save_zoo_model(tiny_zoo, "a-disk", "dncnn", {"in_channels": 1, "depth": 3, "features": 8}, task="deblur",
                   family="dncnn", levels=None, curve=False, degradation="blur:kind=disk,radius=4")
    assert main(["zoo", "list"]) == 0
    assert "only blur:kind=disk,radius=4" in capsys.readouterr().out.replace("\n", "")


def test_zoo_show_reports_a_changed_weights_file(tiny_zoo, capsys):
    weights = tiny_zoo / "tiny-dncnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert main(["zoo", "show", "tiny-dncnn"]) == 1  # a failed integrity check is not a success
    assert "sha256 mismatch" in capsys.readouterr().out


def test_zoo_empty_folder_and_unknown_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("RESTOREKIT_BUNDLED", "none")
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["zoo", "show", "nope"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"restorekit: error: no zoo model 'nope'; installed: none installed in {tmp_path}"]


def test_bundled_models_are_listed_with_the_users_and_found_without_the_checkout(tmp_path, monkeypatch, capsys):
    """Issue 12 item 6: the bundled zoo is package data (restorekit/weights), listed beside the user's folder."""
    from restorekit import zoo

    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(tmp_path / "user"))
    monkeypatch.delenv("RESTOREKIT_BUNDLED", raising=False)
    bundled = zoo.bundled_dir()
    assert bundled is not None and bundled.parent == Path(zoo.__file__).resolve().parent
    save_zoo_model(tmp_path / "user", "mine")
    assert main(["zoo", "list", "--json"]) == 0
    listed = {c["name"]: c["source"] for c in json.loads(capsys.readouterr().out)}
    assert listed["mine"] == "user" and listed["adafm_denoise_s15_s75"] == "bundled"


def test_an_unreadable_card_does_not_break_the_others(tiny_zoo, capsys):
    (tiny_zoo / "broken.json").write_text("{not json")
    (tiny_zoo / "wrong.json").write_text(json.dumps({"name": "wrong", "architecture": "dncnn", "task": "colorize"}))
    assert main(["zoo", "list", "--json"]) == 0
    captured = capsys.readouterr()
    assert [c["name"] for c in json.loads(captured.out)] == ["tiny-adafm", "tiny-dncnn"]
    assert "broken.json: unreadable model card" in captured.err and "task: Value error, unknown task" in captured.err


def test_zoo_import_detects_converts_and_records_provenance(tiny_zoo, tmp_path, capsys):
    """`zoo import`: a card-less KAIR-layout DnCNN file becomes a carded fp16 zoo model in the user's folder."""
    from safetensors.torch import load_file

    from restorekit.card import read_card
    from restorekit.zoo import load_model

    torch.manual_seed(0)
    released = create_model("dncnn", in_channels=1, depth=4, features=8)
    torch.save(released.state_dict(), tmp_path / "dncnn_tiny.pth")
    assert main(["zoo", "import", str(tmp_path / "dncnn_tiny.pth"), "--name", "imported", "--license", "MIT",
                 "--source", "cszn/KAIR : model_zoo/dncnn_tiny.pth"]) == 0
    card = read_card(tiny_zoo / "imported.json")
    assert card.architecture == "dncnn" and card.arguments["depth"] == 4 and card.task == "denoise"
    assert card.provenance.license == "MIT" and card.provenance.original_sha256 == sha256(tmp_path / "dncnn_tiny.pth")
    assert card.sha256 == sha256(tiny_zoo / "imported.safetensors")
    assert all(v.dtype == torch.float16 for v in load_file(str(tiny_zoo / "imported.safetensors")).values())
    x = torch.rand(1, 1, 16, 16)
    assert (load_model("imported")(x) - released(x)).abs().max() < 1e-2  # fp16 storage
    assert main(["zoo", "import", str(tmp_path / "dncnn_tiny.pth"), "--name", "imported"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_zoo_import_records_the_levels_a_modulated_model_covers(tiny_zoo, tmp_path, capsys):
    """Issue 19: the released AdaFM sigma 15 -> 75 file shows no levels; --levels puts them in the card, which
    `adafm fit-lambda` needs (strength 0 = start, 1 = end)."""
    from restorekit.card import read_card

    torch.save(create_model("adafm_net", features=8, blocks=1).state_dict(), tmp_path / "adafm.pth")
    assert main(["zoo", "import", str(tmp_path / "adafm.pth"), "--name", "ada", "--levels", "15,75",
                 "--task", "denoise", "--no-measure"]) == 0
    card = read_card(tiny_zoo / "ada.json")
    assert card.levels == (15, 75) and card.task == "denoise" and "--levels 15,75" in card.provenance.imported_with
    assert main(["zoo", "import", str(tmp_path / "adafm.pth"), "--name", "ada2", "--levels", "15"]) == 2
    assert "expected START,END" in capsys.readouterr().err and not (tiny_zoo / "ada2.json").exists()


def test_a_zoo_name_may_not_shadow_an_architecture(tiny_zoo, tmp_path, capsys):
    """`--model dncnn` means the registered architecture: a zoo model of that name could never be loaded."""
    torch.save(create_model("dncnn", in_channels=1, depth=3, features=8).state_dict(), tmp_path / "d.pth")
    assert main(["zoo", "import", str(tmp_path / "d.pth"), "--name", "dncnn", "--no-measure"]) == 2
    assert "is a registered architecture's name" in capsys.readouterr().err
    assert not (tiny_zoo / "dncnn.json").exists()


def test_fdncnn_layout_is_one_clear_line(tmp_path, capsys):
    """A 4-in/3-out KAIR-layout file (FDnCNN: image + noise map) is recognised and refused, not mis-loaded."""
    state = {"model.0.weight": torch.zeros(8, 4, 3, 3), "model.0.bias": torch.zeros(8),
             "model.2.weight": torch.zeros(3, 8, 3, 3), "model.2.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "fdncnn.pth")
    assert main(["restore", str(tmp_path / "fdncnn.pth"), "--model", str(tmp_path / "fdncnn.pth"),
                 "-o", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "FDnCNN" in lines[0]

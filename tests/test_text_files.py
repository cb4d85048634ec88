"""Users' text files (class tables, training configs, data manifests) are UTF-8, with or without the byte-order
mark Windows' editors write, whatever the locale; geosr's own text files are written as UTF-8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
from pathlib import Path
from geosr.conditioning.changes import load_change_classes
from geosr.osm.classes import load_map_classes
from geosr.training.config import load_config
from geosr.training.layouts import read_class_table
from geosr.training.manifest import load_collection
from geosr.training.evaluate import _write_text

d = Path(sys.argv[1])
out = {"encoding": __import__("locale").getpreferredencoding(False)}
out["cd"] = [c.name for c in load_change_classes(str(d / "cd.json")).classes]
out["map"] = [c.description for c in load_map_classes(d / "map.json").classes]
out["config"] = load_config(d / "train.toml").description
out["refdiff"] = [c.name for c in read_class_table(d / "CLASS_Table.txt").classes]
out["manifest"] = [s.group for s in load_collection(d / "data.json").sets]
_write_text(d / "metrics.md", "SAM\u00b0 \u2013 \u00e9t\u00e9")
print(json.dumps(out))
"""


def test_users_text_files_with_a_bom_and_accents_read_in_an_ascii_locale(tmp_path):
    """Read with the locale's encoding, a class table saved by a Windows editor was "not JSON: Unexpected UTF-8 BOM",
    and its accents became "InchangÃ©" in the output's tags under cp1252 (found in review); here the locale is C
    (ASCII), where the same reads failed outright."""
    bom = "\ufeff"
    cd = {"name": "ocsol", "classes": [{"value": 0, "name": "Inchangé", "changed": False},
                                       {"value": 1, "name": "Bâti nouveau", "changed": True}]}
    (tmp_path / "cd.json").write_text(bom + json.dumps(cd, ensure_ascii=False), encoding="utf-8")
    table = {"name": "bati", "classes": [{"id": 0, "name": "fond", "color": "#000000"},
                                        {"id": 1, "name": "batiment", "color": "#ff0000", "description": "bâti",
                                         "tags": {"building": True}}]}
    (tmp_path / "map.json").write_text(bom + json.dumps(table, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "train.toml").write_text(bom + 'description = "essai à Besançon"\n', encoding="utf-8")
    (tmp_path / "CLASS_Table.txt").write_text(bom + "0 inchangé\n1 modifié\n", encoding="utf-8")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "data.json").write_text(bom + json.dumps({"sets": [{"layout": "pairs", "path": "imgs",
                                                                   "group": "forêt"}]}, ensure_ascii=False),
                                        encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                       encoding="utf-8", env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["encoding"].lower() in ("ansi_x3.4-1968", "ascii", "us-ascii")  # the test means something
    assert got["cd"] == ["Inchangé", "Bâti nouveau"] and got["map"] == ["", "bâti"]
    assert got["config"] == "essai à Besançon" and got["refdiff"] == ["inchangé", "modifié"]
    assert got["manifest"] == ["forêt"]
    assert (tmp_path / "metrics.md").read_bytes() == "SAM° – été".encode()

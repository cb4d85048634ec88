"""geosr batch without a cluster: manifests (YAML, CSV, JSON lines, globs), checks, skip decisions, --dry-run."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import typer
from affine import Affine
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.batch import batch as batch_command
from geosr.errors import OptionError
from geosr.pipeline.batch import ManifestError, plan_batch, read_manifest, record_path, split_rows

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def scenes(tmp_path):
    """Three small LR scenes and an output folder; the manifest lives in tmp_path."""
    for i in range(3):
        make_raster(tmp_path / f"s{i}.tif", (smooth_field(3, 24, 20, seed=i) * 255).astype(np.uint8))
    (tmp_path / "out").mkdir()
    return tmp_path


YAML = """
defaults:
  out: out/{stem}_x{x}.tif
  x: 4
  window: 8
jobs:
  - lr: s0.tif
  - lr: s1.tif
    x: 2
    id: second
    lr_consistency: off
  - {lr: s2.tif, ref-bands: [3, 2, 1], fuse_overlaps: "yes", ref-detail: "no", lr-consistency: bicubic}
"""


def test_yaml_defaults_templates_and_relative_paths(scenes, monkeypatch):
    (scenes / "jobs.yaml").write_text(YAML)
    monkeypatch.chdir("/")
    m = read_manifest(scenes / "jobs.yaml", defaults={"model": "lanczos", "x": 8})
    assert m.problems == []
    a, b, c = m.jobs
    assert (a.id, a.lr, a.out, a.x, a.window, a.model) == (
        "s0_x4", str(scenes / "s0.tif"), str(scenes / "out/s0_x4.tif"), 4, 8, "lanczos"
    )
    assert (b.id, b.out, b.x) == ("second", str(scenes / "out/s1_x2.tif"), 2)  # a job's own value wins
    assert b.lr_consistency == "off"  # YAML reads a bare off as false
    assert c.ref_bands == "3,2,1" and c.fuse_overlaps is True and c.where == "jobs.yaml job 3"
    assert a.ref_detail is None and c.ref_detail is False  # unset: the checkpoint's own setting
    assert c.upscale_options()["sampler"].reference_detail is False
    assert a.lr_consistency is None and c.upscale_options()["sampler"].lr_consistency == "bicubic"
    opts = a.upscale_options(device="cpu")
    assert opts["tiling"].window == 8 and opts["device"].device == "cpu" and opts["output"] == a.out


def test_ids_of_outputs_of_one_name_do_not_depend_on_the_working_folder(scenes, monkeypatch):
    """Two outputs named r.tif took their paths from the working folder as ids: `o/r.tif` run from the manifest's
    folder, `tmp/.../o/r.tif` run from /."""
    (scenes / "o2").mkdir()
    (scenes / "ids.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/r.tif, x: 2}\n"
                                     "  - {lr: s1.tif, out: o2/r.tif, x: 2}\n")
    (scenes.parent / "link").symlink_to(scenes)  # (through a link to its folder, the same)
    for site in ("g1", "g2"):  # a glob from a folder given as `base`: paths from there
        (scenes / site).mkdir()
        shutil.copy(scenes / "s0.tif", scenes / site / "x.tif")
    seen = []
    for folder in (scenes, "/"):
        monkeypatch.chdir(folder)
        seen.append([j.id for j in read_manifest(scenes / "ids.yaml").jobs])
        seen.append([j.id for j in read_manifest(scenes.parent / "link" / "ids.yaml").jobs])
        seen.append([j.id for j in read_manifest("g*/x.tif", base=scenes, defaults={"out": "{dir}/r.tif",
                                                                                     "x": 2}).jobs])
    assert seen == [["out/r.tif", "o2/r.tif"], ["out/r.tif", "o2/r.tif"], ["g1/r.tif", "g2/r.tif"]] * 2, seen


def test_a_result_of_a_manifest_s_glob_names_its_manifest():
    """A manifest of globs alone went unnamed in its results (jobs.yaml glob a.tif), so jobs.csv beside it took its
    results manifest, jobs.yaml's results gone; the other way round it was refused."""
    from geosr.pipeline.batch.run import _manifest_named

    assert _manifest_named("jobs.yaml glob a.tif") == "jobs.yaml"
    assert _manifest_named("my jobs.yaml glob scenes/a b.tif") == "my jobs.yaml"
    assert _manifest_named("jobs.yaml job 3") == "jobs.yaml" and _manifest_named("jobs.csv line 2") == "jobs.csv"
    assert _manifest_named("the glob scenes/a.tif") is None and _manifest_named(None) is None
    assert _manifest_named("my glob jobs.yaml job 1") == "my glob jobs.yaml"  # (read as "my": refused its own rerun)


def test_a_results_manifest_of_a_manifest_whose_name_begins_as_this_one_s_is_another_s(scenes):
    """A results manifest whose rows came from "jobs.yaml 2.csv" was taken for jobs.yaml's own (its name begins so)
    and would have been replaced; "my glob jobs.yaml" is its own."""
    from geosr.errors import OutputLocationError
    from geosr.pipeline.batch.run import check_results_path

    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    plan = plan_batch(scenes / "jobs.yaml")
    results = scenes / "r.jsonl"
    results.write_text(json.dumps({"id": "b", "status": "ok", "where": "jobs.yaml 2.csv line 2"}) + "\n")
    with pytest.raises(OutputLocationError, match=r"holds the results of another manifest \(jobs.yaml 2.csv\)"):
        check_results_path(results, plan, given=False)
    results.write_text(json.dumps({"id": "a", "status": "ok", "where": "jobs.yaml job 1"}) + "\n")
    check_results_path(results, plan, given=False)  # its own


def test_csv_jsonl_and_glob_give_the_same_jobs(scenes, monkeypatch):
    (scenes / "jobs.csv").write_text("lr,out,x,seed\ns0.tif,out/s0_x4.tif,4,\ns1.tif,out/s1_x4.tif,4,7\n\n")
    lines = [{"lr": "s0.tif", "out": "out/s0_x4.tif", "x": 4}, {"lr": "s1.tif", "out": "out/s1_x4.tif", "seed": 7}]
    (scenes / "jobs.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    csv_jobs = read_manifest(scenes / "jobs.csv").jobs
    jsonl_jobs = read_manifest(scenes / "jobs.jsonl", defaults={"x": 4}).jobs
    monkeypatch.chdir(scenes)
    glob_jobs = read_manifest("s[01].tif", defaults={"out": "out/{stem}_x{x}.tif", "x": "4"}).jobs
    strip = lambda jobs: [{**j.__dict__, "where": None, "seed": 0} for j in jobs]  # noqa: E731
    assert strip(csv_jobs) == strip(jsonl_jobs) == strip(glob_jobs)
    assert [j.seed for j in csv_jobs] == [0, 7] and csv_jobs[1].where == "jobs.csv line 3"
    assert glob_jobs[0].where == "the glob s0.tif"


def test_a_glob_matches_sentinel2_product_folders_not_other_folders(tmp_path, monkeypatch):
    """`geosr batch 'in/*.SAFE'` said "matches no file" where upscale reads each folder as its product, and `in/*`
    ran only the files among them (found in review). Product folders are jobs; other folders are not scenes."""
    from s2_products import l1c_product, l2a_product

    l2a, _ = l2a_product(tmp_path / "in")
    l1c, _ = l1c_product(tmp_path / "in")
    (tmp_path / "in" / "notes").mkdir()
    make_raster(tmp_path / "in" / "s0.tif", (smooth_field(3, 24, 20) * 255).astype(np.uint8))
    monkeypatch.chdir(tmp_path)
    jobs = read_manifest("in/*.SAFE", defaults={"out": "out/{stem}.tif"}).jobs
    expected = [(str(tmp_path / "in" / s.name), str(tmp_path / "out" / f"{s.stem}.tif")) for s in sorted((l1c, l2a))]
    assert [(j.lr, j.out) for j in jobs] == expected
    for pattern in ("in/*", "in/**"):  # a product is one scene, its files not others (its metadata clashed)
        assert [Path(j.lr).name for j in read_manifest(pattern, defaults={"out": "out/{stem}.tif"}).jobs] == \
            sorted([l1c.name, l2a.name, "s0.tif"]), pattern


def test_templates_name_the_scene_not_the_path_s_last_characters(scenes):
    """{stem}/{name}/{dir} of a URL with a query, a Sentinel-2 product's metadata file or zip, a list of band files
    and a /vsicurl?url= path."""
    (scenes / "S2B_MSIL2A_T33UUB.SAFE").mkdir()
    bands = scenes / "bands"
    bands.mkdir()
    for n in ("T33UUB_B02.tif", "T33UUB_B03.tif", "B02.tif", "B03.tif"):
        (bands / n).touch()
    lrs = {
        "https://h.example/x/scene.tif?sig=a/b.c&t=1": ("scene", "scene.tif", "https://h.example/x"),
        "/vsicurl/https://h.example/x/s2.tif#frag": ("s2", "s2.tif", "/vsicurl/https://h.example/x"),
        "/vsicurl?max_retry=3&url=https%3A%2F%2Fh.example%2Fy%2Fb.tif%3Fs%3D1": ("b", "b.tif", "https://h.example/y"),
        "S2B_MSIL2A_T33UUB.SAFE/MTD_MSIL2A.xml": ("S2B_MSIL2A_T33UUB", "S2B_MSIL2A_T33UUB.SAFE", str(scenes)),
        "S2B_MSIL2A_T33UUB.SAFE/": ("S2B_MSIL2A_T33UUB", "S2B_MSIL2A_T33UUB.SAFE", str(scenes)),
        "S2B_MSIL2A_T33UUB.SAFE.zip": ("S2B_MSIL2A_T33UUB", "S2B_MSIL2A_T33UUB.SAFE.zip", str(scenes)),
        "/vsizip//d/p.zip/P.SAFE/MTD_MSIL1C.xml": ("P", "P.SAFE", "/d"),
        "bands/T33UUB_B02.tif,bands/T33UUB_B03.tif": ("T33UUB", "T33UUB", str(bands)),
        "bands/B02.tif, bands/B03.tif": ("bands", "bands", str(bands)),
        # a URL's name as its file is called (a%20b.tif gave a%20b_x4.tif; found in review), unless it would
        # name a folder
        "https://h.example/x/a%20b%C3%BC.tif": ("a bü", "a bü.tif", "https://h.example/x"),
        "https://h.example/x/c%2Fd.tif": ("c%2Fd", "c%2Fd.tif", "https://h.example/x"),
        "e%20f.tif": ("e%20f", "e%20f.tif", str(scenes)),  # a local file's name is as written
        # a STAC API item's ID whole (cut at its last dot, versions v1.0 and v1.1 of an item were one output)
        "https://h.example/c/items/HLS.S30.T33UUB.2023163T101031.v2.0": (
            "HLS.S30.T33UUB.2023163T101031.v2.0", "HLS.S30.T33UUB.2023163T101031.v2.0", "https://h.example/c/items"),
        "https://h.example/c/items/S2A.T51.v1.1?sig=x": ("S2A.T51.v1.1", "S2A.T51.v1.1", "https://h.example/c/items"),
        "https://h.example/c/items/B04.tif": ("B04", "B04.tif", "https://h.example/c/items"),
        "https://h.example/c/items/S2A_MSIL2A_X.SAFE": ("S2A_MSIL2A_X", "S2A_MSIL2A_X.SAFE",
                                                         "https://h.example/c/items"),  # (a catalogue's .SAFE item)
    }
    rows = [{"lr": lr, "out": f"out/{i}:{{stem}}|{{name}}|{{dir}}_x{{x}}.tif", "x": 4} for i, lr in enumerate(lrs)]
    (scenes / "jobs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    m = read_manifest(scenes / "jobs.jsonl")
    assert m.problems == []
    for i, (job, (stem, name, folder)) in enumerate(zip(m.jobs, lrs.values())):
        assert job.out == os.path.normpath(str(scenes / "out" / f"{i}:{stem}|{name}|{folder}_x4.tif")), job.lr


def test_cd_keywords_and_urls_stay_as_they_are(scenes):
    (scenes / "jobs.csv").write_text("lr,out,x,ref,cd\ns0.tif,out/a.tif,4,https://example.org/ref.tif,none\n"
                                     "/vsizip/refs.zip/r.tif,out/b.tif,4,s1.tif,auto\n")
    a, b = read_manifest(scenes / "jobs.csv").jobs
    assert (a.ref, a.cd) == ("https://example.org/ref.tif", "none")
    assert (b.lr, b.cd) == ("/vsizip/refs.zip/r.tif", "auto") and b.ref == str(scenes / "s1.tif")


def test_every_invalid_row_is_listed_with_its_reason(scenes):
    (scenes / "jobs.yaml").write_text(
        """
jobs:
  - {lr: s0.tif, out: out/a.tif}
  - {lr: s0.tif, out: out/d.tif, scael: 4}
  - {lr: s1.tif, out: out/b.tif, x: 17}
  - {lr: s2.tif}
  - {lr: s0.tif, out: out/a.tif, id: dup-out}
  - {lr: s1.tif, out: "out/{name}.{ext}"}
  - {lr: s2.tif, out: out/c.tif, overwrite: maybe, device: cuda}
  - {lr: s2.tif, out: s0.tif, id: clobber}
  - {lr: s1.tif, out: out/e.tif, lr_consistency: on}
  - {lr: s1.tif, out: out/f.tif, lr_consistency: sharp}
  - {lr: s2.tif, out: out/ok.tif}
  - {lr: s2.tif, output: out/g.tif, x: 17}
"""
    )
    m = read_manifest(scenes / "jobs.yaml")
    text = "\n".join(map(str, m.problems))
    assert [j.id for j in m.jobs] == ["a", "ok"]
    for expected in (
        "job 2 (d): unknown option 'scael' (did you mean scale?)",
        "job 3 (b): x: 17 is not a supported scale factor",  # named by its output (out/b.tif), as a job is
        "job 4: has no out",
        "job 5 (dup-out): out " + str(scenes / "out/a.tif") + " is also the output of jobs.yaml job 1",
        "job 6: out: unknown placeholder {ext}",
        "job 7 (c): overwrite: 'maybe' is not true or false",
        "job 7 (c): device: the device is chosen per worker",
        "job 8 (clobber): out " + str(scenes / "s0.tif") + " is an input of jobs.yaml job 1",
        "job 9 (e): lr_consistency: 'on' is not a mode: use box or bicubic",
        "job 10 (f): lr_consistency: 'sharp' is not one of off, box, bicubic",
        "job 12 (g): x: 17",  # named through the alias `output`
    ):
        assert expected in text, (expected, text)
    with pytest.raises(ManifestError) as err:
        m.raise_if_invalid()
    assert str(err.value).startswith(f"{scenes / 'jobs.yaml'}: 10 invalid jobs, nothing was run:")


def test_outputs_hard_linked_to_another_jobs_output_or_input_are_refused(scenes):
    """Outputs were compared by their real paths: two names of one file (a hard link) were two outputs, and the
    jobs wrote the same file at once; an output hard-linked to another job's input was replaced under it."""
    (scenes / "out").mkdir(exist_ok=True)
    (scenes / "out" / "a.tif").write_bytes(b"earlier")
    os.link(scenes / "out" / "a.tif", scenes / "out" / "a_again.tif")
    os.link(scenes / "s1.tif", scenes / "s1_link.tif")
    (scenes / "jobs.yaml").write_text(
        "jobs:\n  - {lr: s0.tif, out: out/a.tif}\n  - {lr: s2.tif, out: out/a_again.tif}\n"
        "  - {lr: s1.tif, out: out/b.tif}\n  - {lr: s2.tif, out: s1_link.tif, id: clobber}\n"
        "  - {lr: s2.tif, out: out/new.tif}\n")
    m = read_manifest(scenes / "jobs.yaml")
    text = "\n".join(map(str, m.problems))
    assert [j.id for j in m.jobs] == ["a", "b", "new"], text
    assert f"job 2 (a_again): out {scenes / 'out/a_again.tif'} is also the output of jobs.yaml job 1" in text
    assert f"job 4 (clobber): out {scenes / 's1_link.tif'} is an input of jobs.yaml job 3" in text


def test_refused_rows_still_count_in_the_checks_across_rows(scenes):
    """A row refused for a bad value (x: banana) was left out of the checks across rows: a valid job writing over
    its input, over its output or under its id was not refused, and ``--skip-invalid --overwrite`` then ran it and
    replaced the refused row's input. A band-file list's files were one input: a job could write over a band."""
    (scenes / "m.csv").write_text(
        "id,lr,out,x,model\n"
        "j1,s0.tif,out/a.tif,banana,bicubic\n"
        "j2,s1.tif,s0.tif,4,bicubic\n"        # over the refused row's input
        "j3,s1.tif,out/a.tif,4,bicubic\n"     # over the refused row's output
        "j1,s0.tif,out/c.tif,4,bicubic\n"     # the refused row's id
        "j5,\"s1.tif,s2.tif,s1.tif\",out/d.tif,2,bicubic\n"
        "j6,s0.tif,s2.tif,2,bicubic\n"        # over a band file of j5
        "j7,s0.tif,out/e.tif,2,bicubic\n")
    m = read_manifest(scenes / "m.csv")
    text = "\n".join(map(str, m.problems))
    assert [j.id for j in m.jobs] == ["j5", "j7"], text
    assert f"line 3 (j2): out {scenes / 's0.tif'} is an input of m.csv line 2" in text
    assert f"line 4 (j3): out {scenes / 'out/a.tif'} is also the output of m.csv line 2" in text
    assert "line 5 (j1): id 'j1' is also the id of m.csv line 2" in text
    assert f"line 7 (j6): out {scenes / 's2.tif'} is an input of m.csv line 6" in text
    before = (scenes / "s0.tif").read_bytes()
    plan = plan_batch(scenes / "m.csv", skip_invalid=True, overwrite=True)
    assert [j.spec.id for j in plan.jobs] == ["j5", "j7"]
    assert (scenes / "s0.tif").read_bytes() == before


def test_a_refused_row_with_two_problems_is_one_failed_job_with_both_reasons(scenes):
    """A row refused for two reasons was two results lines of one id, and two failed jobs in the counts ("2 failed
    of 3 jobs" for a manifest of two rows; found in review). Also: the Python API's callbacks are checked before
    anything runs (`progress=True` was a TypeError once the cluster was up, the other jobs "cancelled")."""
    from geosr.errors import OptionError
    from geosr.pipeline.batch import batch
    from geosr.pipeline.batch.results import invalid_results

    (scenes / "m.csv").write_text("id,lr,out,x,model,sampler,compress\n"
                                  "ok1,s0.tif,out/a.tif,2,bicubic,,\n"
                                  "bad2,s1.tif,out/b.tif,2,bicubic,fast,ZIP\n")
    plan = plan_batch(scenes / "m.csv", skip_invalid=True)
    lines = invalid_results(plan)
    assert [(r.id, r.where) for r in lines] == [("bad2", "m.csv line 3")], lines
    assert "sampler" in lines[0].error and "compress" in lines[0].error and "; " in lines[0].error
    result = batch(scenes / "m.csv", skip_invalid=True, dry_run=True)
    assert len(result.jobs) == 2 and result.count("failed") == 1
    for name in ("progress", "on_start"):
        with pytest.raises(OptionError, match=rf"{name} True: give a function of"):
            batch(scenes / "m.csv", skip_invalid=True, **{name: True})


def test_a_row_is_told_every_bad_value_at_once(scenes):
    """Found in review: a row's values were told in rounds: a bad compress or sampler hid a bad steps, and of the
    shared checks only the first refusal was told, so a row was mended one value per run."""
    (scenes / "m.csv").write_text("lr,out,x,model,compress,steps,window,overlap,compress_level\n"
                                  "s0.tif,out/a.tif,2,bicubic,FOO,-2,8,10,\n"
                                  "s1.tif,out/b.tif,2,bicubic,LZW,-1,8,2,5\n")
    m = read_manifest(scenes / "m.csv")
    assert not m.jobs
    first = [p.message for p in m.problems if p.where == "m.csv line 2"]
    assert len(first) == 3, m.problems
    assert first[0].startswith("compress: 'FOO'") and first[1].startswith("overlap 10 must be smaller")
    assert first[2] == "steps must be a whole number of at least 0, not -2"
    second = [p.message for p in m.problems if p.where == "m.csv line 3"]
    assert len(second) == 2 and second[0].startswith("steps must") and "compress_level 5" in second[1], second
    # an option checked against a refused one is not checked against that one's default instead
    (scenes / "m.csv").write_text("lr,out,x,model,compress,compress_level,window,overlap\n"
                                  "s0.tif,out/a.tif,2,bicubic,ZTSD,15,-1,3\n")
    assert [p.message.split(" ")[0] for p in read_manifest(scenes / "m.csv").problems] == ["compress:", "window"]


def test_refused_rows_claim_their_names_and_outputs_wherever_they_stand(scenes):
    """Found in review: a refused row claimed its output only against the rows below it (a valid job above it with
    the same output ran), and a refused row named after its output's stem did not claim that name: a job with that
    id, or another output of that stem, gave two results lines of one id."""
    (scenes / "m.csv").write_text(
        "id,lr,out,x,model\n"
        "j1,s1.tif,out/a.tif,4,bicubic\n"       # above the refused row, same output
        ",s0.tif,out/a.tif,banana,bicubic\n"    # refused: named 'a' after its output
        "a,s2.tif,out/b.tif,4,bicubic\n"        # the refused row's name as its id
        ",s2.tif,out2/a.tif,4,bicubic\n"        # another output named a.tif: told apart by its path
        "j5,s1.tif,out/e.tif,4,bicubic\n")
    m = read_manifest(scenes / "m.csv")
    text = "\n".join(map(str, m.problems))
    assert f"line 2 (j1): out {scenes / 'out/a.tif'} is also the output of m.csv line 3" in text
    assert "line 4 (a): id 'a' is also the id of m.csv line 3" in text
    assert [j.id for j in m.jobs] == ["out2/a.tif", "j5"], text  # its path from the manifest's folder


def test_reference_settings_for_every_job_leave_the_jobs_without_a_reference_alone(scenes):
    """`--no-coregister`, `--no-cloud-masks` or `ref_bands` given for every job (command line, defaults) concern the
    jobs with a reference: upscale refuses them without one (a reference left out by mistake), batch must not refuse
    the others for it; a row giving one itself without a reference is refused as upscale would."""
    make_raster(scenes / "ref.tif", (smooth_field(3, 48, 40, seed=5) * 255).astype(np.uint8),
                transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    (scenes / "jobs.yaml").write_text(
        "defaults: {ref_bands: '1,2,3', model: bicubic, x: 2}\njobs:\n  - {lr: s0.tif, out: out/a.tif}\n"
        "  - {lr: s1.tif, out: out/b.tif, ref: ref.tif, model: reference-paste}\n"
        "  - {lr: s2.tif, out: out/c.tif, coregister: false}\n"
        "  - {lr: s2.tif, out: out/d.tif, cloud_masks: false}\n")
    plan = plan_batch(scenes / "jobs.yaml", coregister=False, cloud_masks=False, skip_invalid=True)
    assert [j.spec.id for j in plan.jobs] == ["a", "b"], plan.invalid
    assert [j.spec.coregister for j in plan.jobs] == [True, False]
    assert [j.spec.cloud_masks for j in plan.jobs] == [True, False]
    for job in ("c", "d"):
        assert any(f"({job}): " in str(p) and "no reference was given" in str(p) for p in plan.invalid), plan.invalid


def test_rows_refused_before_they_are_read_still_keep_their_files(scenes):
    """Found in review: a JSON line refused for a key given twice, or a CSV row with more cells than columns (a band
    list not quoted), never entered the checks across rows: with --skip-invalid --overwrite a later job wrote over
    its input (s0.tif's bytes changed)."""
    before = (scenes / "s0.tif").read_bytes()
    (scenes / "j.jsonl").write_text('{"lr": "s0.tif", "out": "out/a.tif", "x": 2, "x": 4, "model": "bicubic"}\n'
                                    '{"lr": "s1.tif", "out": "s0.tif", "x": 2, "model": "bicubic"}\n'
                                    '{"lr": "s2.tif", "out": "out/c.tif", "x": 2, "model": "bicubic"}\n')
    (scenes / "k.csv").write_text("lr,out,x,model\ns0.tif,s2.tif,out/a.tif,2,bicubic\n"
                                  "s1.tif,s2.tif,2,bicubic\ns1.tif,out/c.tif,2,bicubic\n")
    for name, clobber, line in (("j.jsonl", "s0.tif", 1), ("k.csv", "s2.tif", 2)):
        m = read_manifest(scenes / name)
        assert [j.out for j in m.jobs] == [str(scenes / "out/c.tif")], m.problems
        assert any(f"out {scenes / clobber} is an input of {name} line {line}" in str(p) for p in m.problems), \
            m.problems
        plan = plan_batch(scenes / name, skip_invalid=True, overwrite=True)
        assert [j.spec.out for j in plan.jobs] == [str(scenes / "out/c.tif")]
    assert (scenes / "s0.tif").read_bytes() == before


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.yaml", "jobs:\n  - lr: [unclosed\n", "not valid YAML at line"),
        ("top.yaml", "x: 4\njobs: [{lr: a.tif, out: b.tif}]\n", "unknown top-level key x"),
        ("none.yaml", "defaults: {x: 4}\n", "holds no jobs"),
        ("jobs.txt", "lr,out\n", "unknown manifest format '.txt'"),
        ("nolr.csv", "out,x\nb.tif,4\n", "the header has no lr column"),
        # a key given twice kept its last value silently (x,x: the row ran at x4, not at the x2 it also gave)
        ("header.csv", "lr,out\n\n", "holds no jobs .only its header line."),  # exit 0 and "0 jobs" before
        ("empty.jsonl", "\n  \n", "holds no jobs"),
        ("blank.csv", "lr,out,,\na.tif,b.tif,,\n", "unknown column ''"),  # not "two '' columns"
        ("twice.csv", "lr,x,out,x\na.tif,2,b.tif,4\n", "line 1: the header has two 'x' columns: one column per"),
        ("alias.csv", "lr,scale,out,x\na.tif,2,b.tif,4\n", r"two columns for x \('scale' and 'x'\)"),
        ("twice.yaml", "jobs:\n  - lr: a.tif\n    x: 2\n    x: 4\n", "at line 4 .key 'x' given twice in one mapping"),
        ("twice.json", '{"defaults": {"x": 2, "x": 4}, "jobs": [{"lr": "a.tif"}]}', "key 'x' given twice in one"),
        ("twice.jsonl", '{"lr": "a.tif", "x": 2, "x": 4}\n', "line 1: not valid JSON .key 'x' given twice"),
    ],
)
def test_unreadable_manifests(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    try:
        m = read_manifest(tmp_path / name)
        m.raise_if_invalid()  # a JSON line is a row: its problem is the row's
    except ManifestError as exc:
        assert re.search(message, str(exc)), str(exc)
    else:
        raise AssertionError(f"{name} was read: {m.jobs}")


def test_a_glob_that_matches_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as err:
        read_manifest("nothing/*.tif", defaults={"out": "{stem}.tif"})
    assert str(err.value) == "nothing/*.tif: matches no file"  # the whole message: no "1 invalid job" around it
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.tif").write_bytes(b"")
    # the caller's template refused once, before any row (each row's problem until a review found it)
    with pytest.raises(OptionError, match=r"^out: unknown placeholder \{nosuch\} in '\{nosuch\}.tif' "
                                          r"\(placeholders: \{stem\}, \{name\}, \{dir\}, \{x\}\)$"):
        read_manifest("one/*.tif", defaults={"out": "{nosuch}.tif"})
    (tmp_path / "jobs.yaml").write_text("defaults: {out: '{stem}.tif'}\nglob: 'nothing/*.tif'\n")
    m = read_manifest(tmp_path / "jobs.yaml")
    assert [str(p) for p in m.problems] == ["jobs.yaml glob: 'nothing/*.tif' matches no file"]


def test_a_glob_leaves_out_what_an_earlier_batch_wrote_beside_its_inputs(tmp_path, monkeypatch):
    """`geosr batch '*.tif' -o '{stem}_x2.tif'` could not run again (not even to go on after a stop): the glob took
    its outputs for inputs, each "an input of" another row. Outputs with a batch record, and their provenance
    rasters, are left out; other files stay in."""
    monkeypatch.chdir(tmp_path)
    for name in ("s1.tif", "s1_x2.tif", "s1_x2.provenance.tif", "hand.tif"):
        (tmp_path / name).write_bytes(b"")
    record_path(tmp_path / "s1_x2.tif").write_text("{}")
    m = read_manifest("*.tif", defaults={"out": "{stem}_x2.tif"})
    assert sorted(Path(j.lr).name for j in m.jobs) == ["hand.tif", "s1.tif"] and not m.problems, m.problems
    # a glob over everything in the folder (`scenes/*`): the outputs' STAC items, records and GDAL metadata files
    # were taken for scenes too (the items as STAC items: the outputs super-resolved again)
    for name in ("s1_x2.stac.json", "s1_x2.tif.aux.xml", "s1_x2.provenance.tif.aux.xml", "hand.stac.json"):
        (tmp_path / name).write_bytes(b"")
    from geosr.pipeline.batch.manifest import _made_by_batch

    names = [p.name for p in tmp_path.iterdir() if not _made_by_batch(p)]
    assert sorted(names) == ["hand.stac.json", "hand.tif", "s1.tif"], names
    # found in review: a batch's results manifest too (`geosr batch '*'` failed its rerun on its own results), and a
    # glob over outputs alone said "matches no file" where `ls` showed them
    (tmp_path / "geosr-batch.results.jsonl").write_text("{}\n")
    assert _made_by_batch(tmp_path / "geosr-batch.results.jsonl")
    with pytest.raises(ManifestError) as err:
        read_manifest("*_x2.tif", defaults={"out": "again/{stem}.tif"})
    assert str(err.value) == "*_x2.tif: matches only files a batch wrote (1: outputs, their records, sidecars or " \
        "results, e.g. s1_x2.tif), which a glob leaves out; to take outputs as inputs, list them in a manifest"


def test_file_names_with_braces_are_files_not_templates(tmp_path, monkeypatch):
    """Found in review: lr went through the template expansion with no placeholders, so a glob's match named
    `scene{1}.tif` was "unknown placeholder {1}", `b}.tif` "not a valid template", and `c{{d}}.tif` read as
    `c{d}.tif` (no such file): the whole batch refused. A file that exists is the file; other braces are refused."""
    monkeypatch.chdir(tmp_path)
    names = ["scene{1}.tif", "b}.tif", "c{{d}}.tif", "ok.tif"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    m = read_manifest("*.tif", defaults={"out": "out/{stem}_x2.tif"})
    assert not m.problems, m.problems
    assert sorted(Path(j.lr).name for j in m.jobs) == sorted(names)
    assert sorted(Path(j.out).name for j in m.jobs) == sorted(n.replace(".tif", "_x2.tif") for n in names)
    (tmp_path / "jobs.yaml").write_text('jobs:\n  - {lr: "scene{1}.tif", out: a.tif}\n'
                                        '  - {lr: "{dir}/gone.tif", out: b.tif}\n'
                                        '  - {lr: "scene{1}.tif,ok.tif", out: c.tif}\n')
    m = read_manifest(tmp_path / "jobs.yaml")
    assert [Path(j.lr).name for j in m.jobs[:1]] == ["scene{1}.tif"], m.jobs
    assert m.jobs[1].lr == f"{tmp_path / 'scene{1}.tif'},{tmp_path / 'ok.tif'}"  # band files, each as named
    assert [p.message for p in m.problems] == ["lr: unknown placeholder {dir} in '{dir}/gone.tif' (placeholders: "
                                               "none (lr is not templated))"], m.problems
    # a row refused for an option names its lr as its job would (it was null in the results; found in review)
    (tmp_path / "bad.yaml").write_text('jobs:\n  - {lr: "scene{1}.tif", out: "{stem}_o.tif", x: 99}\n')
    m = read_manifest(tmp_path / "bad.yaml")
    assert [(p.lr, p.output) for p in m.problems] == [(str(tmp_path / "scene{1}.tif"),
                                                        str(tmp_path / "scene{1}_o.tif"))]


def test_a_raster_or_a_missing_file_given_as_the_manifest_is_named_in_one_sentence(tmp_path):
    from conftest import make_raster

    make_raster(tmp_path / "scene.tif", np.zeros((3, 4, 4), np.uint8))
    for name, said in (("scene.tif", "scene.tif: is a raster, not a manifest; "),
                       ("missing.csv", "missing.csv: no such manifest file")):
        with pytest.raises(ManifestError) as err:
            read_manifest(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / said)) and "\n" not in str(err.value), str(err.value)


def test_split_rows():
    assert split_rows(8, 6, 0) == ((0, 8),)
    assert split_rows(8, 6, 48) == ((0, 8),)  # small enough: one task
    assert split_rows(8, 6, 12) == ((0, 2), (2, 4), (4, 6), (6, 8))
    assert split_rows(7, 6, 18) == ((0, 2), (2, 5), (5, 7))  # about 3 rows each, never empty
    assert split_rows(3, 100, 10) == ((0, 1), (1, 2), (2, 3))  # at least one whole row per band


def test_checks_open_every_raster_and_list_all_bad_rows(scenes):
    (scenes / "notes.tif").write_text("I am not a raster")
    (scenes / "jobs.yaml").write_text(
        """
defaults: {out: "out/{stem}.tif", x: 4}
jobs:
  - lr: s0.tif
  - lr: missing.tif
  - lr: notes.tif
  - {lr: s1.tif, out: nowhere/s1.tif}
  - {lr: s2.tif, model: no-such-model}
"""
    )
    with pytest.raises(ManifestError) as err:
        plan_batch(scenes / "jobs.yaml")
    where = [p.where for p in err.value.problems]
    assert where == [f"jobs.yaml job {i}" for i in (2, 3, 4, 5)]
    text = str(err.value)
    assert "missing.tif" in text and "notes.tif: not a raster" in text and "nowhere" in text
    assert "unknown model 'no-such-model'" in text
    plan = plan_batch(scenes / "jobs.yaml", skip_invalid=True)
    assert [j.spec.id for j in plan.to_run] == ["s0"] and len(plan.invalid) == 4


def test_existing_outputs_are_skipped_refused_or_replaced(scenes):
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4}\nglob: 's*.tif'\n")
    out = scenes / "out" / "s0.tif"
    out.write_bytes(b"made by hand")
    plan = plan_batch(scenes / "jobs.yaml")
    s0 = plan.jobs[0]
    assert s0.action == "fail" and "was not made by geosr batch" in s0.reason and "`overwrite`" in s0.reason
    assert plan_batch(scenes / "jobs.yaml", overwrite=True).jobs[0].action == "run"
    # the library names its keyword (it said --overwrite to a Python caller; found in review), the CLI its flag, in
    # its table and its --json alike
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--dry-run", "--json"])
    said = json.dumps(json.loads(res.stdout))
    assert "use --overwrite to replace it" in said and "`overwrite`" not in said, said
    # a record that matches the output and the job: skipped; once an input changes: refused, naming it
    from geosr.pipeline.batch.records import comparable, sha256
    from geosr.pipeline.upscale import plan_upscale

    with plan_upscale(s0.spec.lr, **{**s0.spec.upscale_options(device="cpu"), "output": None, "dry_run": True}) as job:
        fp = comparable(job.fingerprint)
    # killed after the output went into place but before its record: the journals and the output's own tags show
    # it is this job's (a file of another's at its place, with its journals: not)
    rows = scenes / "out" / "s0.tif.geosr-work" / "rows_00000_00001"
    rows.mkdir(parents=True)
    (rows / "job.json").write_text(json.dumps({**job.fingerprint, "rows": [0, 1]}))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "fail"  # the file made by hand
    from geosr.pipeline.upscale import upscale

    upscale(s0.spec.lr, **{**s0.spec.upscale_options(device="cpu"), "output": out, "overwrite": True})
    assert not rows.parent.exists()  # (a finished run leaves none)
    rows.mkdir(parents=True)
    (rows / "job.json").write_text(json.dumps({**job.fingerprint, "rows": [0, 1]}))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "run"
    (rows / "job.json").write_text(json.dumps({**job.fingerprint, "version": "0.0.1", "rows": [0, 1]}))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "fail"
    st = out.stat()
    record = dict(fingerprint=fp, output=dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256(out)))
    record_path(out).write_text(json.dumps(record))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "skip"
    assert plan_batch(scenes / "jobs.yaml", force=True).jobs[0].action == "run"
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes: still up to date
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "skip"
    lr = scenes / "s0.tif"
    os.utime(lr, ns=(lr.stat().st_atime_ns, lr.stat().st_mtime_ns + 10**9))
    plan = plan_batch(scenes / "jobs.yaml")
    assert plan.jobs[0].action == "fail" and ("made from other inputs or options (the LR s0.tif changed (its size "
                                              "or modification time));") in plan.jobs[0].reason
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 2}\nglob: 's*.tif'\n")
    reason = plan_batch(scenes / "jobs.yaml").jobs[0].reason
    assert "(the LR s0.tif changed (its size or modification time); `scale` 4 -> 2; `overlap`" in reason, reason
    assert "`window`" in reason, reason


def test_an_input_replaced_keeping_its_size_and_modification_time_is_no_up_to_date_job(scenes):
    """An input replaced by another file of the same size and modification time (as `cp -p` or `tar x` leave it) was
    taken for the one the record names: "skipped (up to date)", its output of the old input kept (found in review).
    A digest of its content tells them apart: refused, saying how; a record written when geosr compared the size and
    time alone says that. Only a replaced input is another: one read and given its access time back (a backup) or
    `chmod`-ed leaves the job up to date (found in review: a status-change time in the identity made it another)."""
    from geosr.pipeline.batch.records import comparable, sha256
    from geosr.pipeline.upscale import plan_upscale

    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4}\nglob: 's0.tif'\n")
    out = make_raster(scenes / "out" / "s0.tif", np.zeros((3, 96, 80), np.uint8))
    spec = plan_batch(scenes / "jobs.yaml", overwrite=True).jobs[0].spec
    with plan_upscale(spec.lr, **{**spec.upscale_options(device="cpu"), "output": None, "dry_run": True}) as job:
        fp = comparable(job.fingerprint)
    st = out.stat()
    record = dict(fingerprint=fp, output=dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256(out)))
    record_path(out).write_text(json.dumps(record))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "skip"
    lr, other = scenes / "s0.tif", scenes / "copy.tif"
    was = lr.stat()
    os.utime(lr, ns=(was.st_atime_ns - 10**9, was.st_mtime_ns))  # read, its access time given back
    os.chmod(lr, 0o600)
    assert lr.stat().st_ctime_ns != was.st_ctime_ns
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "skip"
    shutil.copyfile(lr, other)
    with rasterio.open(other, "r+") as ds:  # other pixels, the same size
        ds.write(255 - ds.read())
    was = lr.stat()
    shutil.copyfile(other, lr)  # cp -p
    os.utime(lr, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert (lr.stat().st_size, lr.stat().st_mtime_ns) == (was.st_size, was.st_mtime_ns)
    plan = plan_batch(scenes / "jobs.yaml")
    assert plan.jobs[0].action == "fail" and "made from other inputs or options (the LR s0.tif changed (its " \
        "content, keeping its size and modification time, as cp -p or tar can leave a replaced file)); use " \
        "`overwrite`" in plan.jobs[0].reason, plan.jobs[0].reason
    old = {**fp, "inputs": [fp["inputs"][0][:3], *fp["inputs"][1:]]}  # [path, size, mtime_ns], as it was recorded
    old.pop("file_identity")
    record_path(out).write_text(json.dumps({**record, "fingerprint": old}))
    plan = plan_batch(scenes / "jobs.yaml")
    assert plan.jobs[0].action == "fail" and plan.jobs[0].reason == (
        f"{out}: already exists, made from other inputs or options (recorded by an earlier geosr, which identified "
        "input files by path, size and modification time alone; geosr now also compares their sampled content); use "
        "`overwrite` to replace it"), plan.jobs[0].reason


@pytest.mark.parametrize("sidecar", ["s0.stac.json", "s0.provenance.tif", "s0.tif.aux.xml",
                                     "s0.provenance.tif.aux.xml"])
def test_a_file_of_the_user_s_at_a_sidecar_s_name_is_not_replaced_without_overwrite(scenes, sidecar):
    """batch replaced `<stem>.stac.json` / `<stem>.provenance.tif` beside an absent output (exit 0), where upscale
    refuses: the job now fails unless --overwrite, or a record shows a batch made this output (and so the file)."""
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 2, model: bicubic}\n"
                                      "jobs:\n  - lr: s0.tif\n")
    (scenes / "out" / sidecar).write_text("the user's own file")
    s0 = plan_batch(scenes / "jobs.yaml").jobs[0]
    assert s0.action == "fail" and s0.error_type == "OutputExistsError", s0
    assert s0.reason.startswith(f"{scenes / 'out' / sidecar}: already exists") and "`overwrite`" in s0.reason
    assert plan_batch(scenes / "jobs.yaml", overwrite=True).jobs[0].action == "run"
    record_path(scenes / "out" / "s0.tif").write_text(json.dumps({"fingerprint": {}, "output": {}}))
    assert plan_batch(scenes / "jobs.yaml").jobs[0].action == "run"  # the output was removed, its sidecars kept


def test_two_outputs_that_would_write_one_sidecar_are_refused(scenes):
    """out/a.tif and out/a.tiff both write out/a.stac.json; out/a.provenance.tif is a's provenance raster."""
    (scenes / "jobs.yaml").write_text(
        "defaults: {x: 2, model: bicubic}\njobs:\n  - {lr: s0.tif, out: out/a.tif}\n  - {lr: s1.tif, out: out/a.tiff}\n"
        "  - {lr: s2.tif, out: out/a.provenance.tif}\n")
    with pytest.raises(ManifestError) as err:
        plan_batch(scenes / "jobs.yaml")
    text = " ".join(str(err.value).split())
    said = "would write its provenance raster and STAC item where jobs.yaml job 1 writes its own"
    assert f"out {scenes / 'out/a.tiff'} {said}" in text
    assert f"out {scenes / 'out/a.provenance.tif'} is also the provenance raster of jobs.yaml job 1" in text
    assert [p.where for p in err.value.problems] == ["jobs.yaml job 2", "jobs.yaml job 3"]
    (scenes / "jobs.yaml").write_text(
        "defaults: {x: 2, model: bicubic}\njobs:\n  - {lr: s0.tif, out: out/a.tif}\n  - {lr: s1.tif, out: out/a.tif}\n")
    with pytest.raises(ManifestError) as err:  # the same output: that one reason, not its sidecars' too
        plan_batch(scenes / "jobs.yaml")
    assert [p.message for p in err.value.problems if p.message.startswith("out ")] == [
        f"out {scenes / 'out/a.tif'} is also the output of jobs.yaml job 1"]


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("batch")(batch_command)
    app.command("noop")(lambda: None)  # two commands, so "batch" stays a subcommand as in geosr
    return app


def test_cli_dry_run_and_invalid_manifest(scenes):
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif'}\nglob: 's*.tif'\n")
    runner = CliRunner()
    res = runner.invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "-x", "4", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["dry_run"] and got["counts"]["planned"] == 3 and got["jobs"][0]["windows"] == 1
    assert not list((scenes / "out").iterdir())
    (scenes / "bad.csv").write_text("lr,out,x\ns0.tif,out/a.tif,17\nmissing.tif,out/b.tif,4\ns1.tif,out/c.tif,4\n")
    res = runner.invoke(_cli(), ["batch", str(scenes / "bad.csv")])
    assert res.exit_code == 2
    assert "2 invalid jobs, nothing was run" in res.stderr
    assert "bad.csv line 2 (a): x: 17 is not a supported scale factor" in res.stderr
    assert "bad.csv line 3" in res.stderr and "missing.tif" in res.stderr
    res = runner.invoke(_cli(), ["batch", str(scenes / "bad.csv"), "--json"])
    assert res.exit_code == 2 and len(json.loads(res.stdout)["invalid"]) == 2


def test_reading_manifests_loads_neither_torch_nor_dask():
    import subprocess
    import sys

    code = ("import sys, geosr.pipeline.batch.manifest, geosr.pipeline.batch, geosr.cli.batch; "
            "print(sorted(m for m in ('torch', 'distributed', 'dask', 'rasterio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_documented_yaml_manifest_plans(tmp_path):
    """docs/cli-batch.md's YAML example, with the files it names, plans every job (it once paired `model: bicubic`
    with a reference, which every job then refused)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli-batch.md").read_text()
    example = re.search(r"\*\*YAML\*\*.*?```yaml\n(.*?)```", doc, re.S).group(1)
    for i, stem in enumerate(("berlin", "potsdam", "extra/spree")):
        field = (smooth_field(3, 24, 20, seed=i) * 255).astype(np.uint8)
        (tmp_path / "scenes" / stem).parent.mkdir(parents=True, exist_ok=True)
        make_raster(tmp_path / "scenes" / f"{stem}.tif", field)
        (tmp_path / "refs").mkdir(exist_ok=True)
        make_raster(tmp_path / "refs" / f"{Path(stem).name}_2019.tif", field)
    (tmp_path / "masks").mkdir()
    make_raster(tmp_path / "masks" / "potsdam.tif", (smooth_field(1, 24, 20, seed=9) > 0.5).astype(np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.yaml").write_text(example)
    plan = plan_batch(tmp_path / "jobs.yaml")
    assert sorted(j.spec.id for j in plan.to_run) == ["berlin_x8", "potsdam", "spree_x8"]


def test_a_csv_column_no_option_has_is_refused_even_when_empty(scenes):
    """A misspelt header (refx for ref) was ignored while its cells were empty: the reference silently left out."""
    (scenes / "jobs.csv").write_text("id,lr,out,x,refx\na,s0.tif,out/a.tif,4,\n")
    with pytest.raises(ManifestError, match=r"jobs.csv line 1: unknown column 'refx' \(did you mean ref\?\)"):
        read_manifest(scenes / "jobs.csv")



def test_invalid_rows_are_listed_in_the_manifest_s_order_with_their_paths(scenes):
    """Rows refused as read (a bad value) were listed before those refused by the check, whatever their lines, and
    their results lines had no lr or output."""
    (scenes / "jobs.csv").write_text("id,lr,out,x,model\na,missing.tif,out/a.tif,2,bicubic\n"
                                     "b,s0.tif,out/b.tif,40,bicubic\nc,s1.tif,out/c.tif,2,nosuch\n")
    plan = plan_batch(scenes / "jobs.csv", skip_invalid=True)
    assert [(p.where, p.job_id) for p in plan.invalid] == [("jobs.csv line 2", "a"), ("jobs.csv line 3", "b"),
                                                           ("jobs.csv line 4", "c")]
    b = plan.invalid[1]
    assert (b.lr, b.output) == (str(scenes / "s0.tif"), str(scenes / "out" / "b.tif")) and "40" in b.message
    # a dry run lists every row, planned or not, in the manifest's order too (planned ones came first)
    from geosr.pipeline.batch import batch

    with (scenes / "jobs.csv").open("a") as f:
        f.write("d,s2.tif,out/d.tif,2,bicubic\n")
    (scenes / "jobs.csv").write_text((scenes / "jobs.csv").read_text().replace(
        "id,lr,out,x,model\n", "id,lr,out,x,model\nz,s1.tif,out/z.tif,2,bicubic\n"))
    dry = batch(scenes / "jobs.csv", dry_run=True, skip_invalid=True)
    assert [j.id for j in dry.jobs] == ["z", "a", "b", "c", "d"], [j.id for j in dry.jobs]


def test_a_dry_run_checks_the_local_cluster_s_device(scenes):
    """`--device cuda` on a machine without CUDA: the dry run said "1 planned", exit 0; the run refused it (found
    in review). The dry run refuses it as the run would; on an existing cluster it is the cluster's to say."""
    import torch

    from geosr.errors import OptionError
    from geosr.pipeline.batch import batch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (scenes / "jobs.csv").write_text("id,lr,out,x,model\na,s0.tif,out/a.tif,2,bicubic\n")
    with pytest.raises(OptionError, match="no CUDA device is available here"):
        batch(scenes / "jobs.csv", dry_run=True, device="cuda")
    assert [j.id for j in batch(scenes / "jobs.csv", dry_run=True, device="cpu").jobs] == ["a"]
    assert not (scenes / "out" / "a.tif").exists()


def test_a_task_s_geosr_error_is_its_sentence_alone():
    """A job that met another run on its output read `OutputBusyError: OUT: is being written by another geosr run
    (...); wait for it ... ([Errno 11] Resource temporarily unavailable)`: the class (already in error_type) and a
    suppressed cause. Other errors keep both, their cause being where GDAL says which block of which file."""
    from geosr.io.lock import OutputBusyError
    from geosr.pipeline.batch.results import TaskError

    try:
        try:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        except BlockingIOError:
            raise OutputBusyError("o.tif: is being written by another geosr run; wait for it") from None
    except OutputBusyError as exc:
        busy = TaskError.from_exception(exc)
    assert (str(busy), busy.kind) == ("o.tif: is being written by another geosr run; wait for it", "OutputBusyError")
    try:
        try:
            raise OSError("TIFFReadEncodedTile() failed in block 3")
        except OSError as cause:
            raise RuntimeError("read failed") from cause
    except RuntimeError as exc:
        other = TaskError.from_exception(exc)
    assert str(other) == "RuntimeError: read failed (TIFFReadEncodedTile() failed in block 3)"


def test_a_style_in_a_manifest_and_a_json_refusal_read_plainly(scenes):
    """`style: sample` said `unknown option 'style' (did you mean steps?)`; the --json error of invalid rows ended in
    a dangling colon."""
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, style: sample}\n")
    said = " ".join(str(p) for p in read_manifest(scenes / "jobs.yaml").problems)
    assert "style: geosr batch takes no style" in said and "did you mean" not in said, said
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--dry-run", "--json"])
    payload = json.loads(res.stdout)
    assert res.exit_code == 2 and payload["error"] == f"{scenes / 'jobs.yaml'}: 1 invalid job, nothing was run"


@pytest.mark.parametrize("address, said", [
    ("bogus:addr", "not an address; give :PORT, HOST:PORT or none"),
    (":99999", "port 99999 is out of range (0 to 65535)"),
    ("192.0.2.1:8787", "this machine cannot serve a dashboard on 192.0.2.1"),
])
def test_a_dashboard_address_dask_cannot_serve_is_refused_before_the_checks(scenes, address, said):
    """`--dashboard bogus:addr` was an internal error (exit 1) once every job had been checked; `:99999` went to a
    random port without a word. Now one sentence, exit 2, before anything is read or written."""
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    for extra in ((), ("--dry-run",)):
        res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--dashboard", address, *extra])
        assert res.exit_code == 2, res.output
        assert f"geosr: error: --dashboard {address!r}: {said}" in " ".join(res.output.split()), res.output
        assert "checking" not in res.output and list((scenes / "out").iterdir()) == []
    assert not (scenes / "jobs.results.jsonl").exists()


@pytest.mark.parametrize("address, said", [
    ("not an address", "not a Dask scheduler address (no port); give tcp://HOST:PORT"),
    ("http://127.0.0.1:8786", "not a Dask scheduler address (Dask knows no http:// addresses)"),
    ("tcp://127.0.0.1:99999", "port 99999 is out of range (1 to 65535)"),
])
def test_a_scheduler_address_dask_cannot_read_is_refused_before_the_checks(scenes, address, said):
    """`--scheduler 'not an address'` was an internal error (exit 1) once every job had been checked, and a dry run
    said the jobs were planned. Now one sentence, exit 2, dry run or not."""
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    for extra in ((), ("--dry-run",)):
        res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--scheduler", address, *extra])
        assert res.exit_code == 2, res.output
        assert f"geosr: error: --scheduler {address!r}: {said}" in " ".join(res.output.split()), res.output
        assert list((scenes / "out").iterdir()) == []
    assert not (scenes / "jobs.results.jsonl").exists()


@pytest.mark.parametrize("setting", [{"results": 5}, {"results": ["a.jsonl"]}, {"client": "foo"},
                                     {"scheduler": 5}])
def test_python_run_settings_of_the_wrong_kind_are_option_errors(scenes, setting):
    """`results=5` was a raw TypeError, `client="foo"` passed a dry run and failed the run with an AttributeError."""
    from geosr.errors import OptionError
    from geosr.pipeline.batch.run import batch

    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    with pytest.raises(OptionError) as info:
        batch(scenes / "jobs.yaml", dry_run=True, **setting)
    assert info.value.param == next(iter(setting))
    from geosr.pipeline.batch.run import RunSettings  # an address is taken as checked (" tcp://..." failed the run)

    assert RunSettings(scheduler=" tcp://127.0.0.1:1 ").scheduler == "tcp://127.0.0.1:1"


def test_a_batch_that_cannot_start_leaves_the_earlier_results_manifest_as_it_was(scenes, monkeypatch):
    """An unreachable --scheduler (or a cluster that failed to start) emptied the results manifest of the earlier
    run (612 bytes -> 0): it was opened for writing before the cluster was asked for."""
    from geosr.errors import NetworkError
    from geosr.pipeline.batch import run as run_module

    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n"
                                      "  - {lr: s1.tif, out: out/b.tif, x: 2, model: bicubic}\n"
                                      "  - {lr: s2.tif, out: out/c.tif, x: banana}\n")
    (scenes / "out" / "b.tif").write_bytes(b"not made by geosr batch")  # fails its check: a line before the run
    earlier = '{"id": "a", "status": "ok", "output": "out/a.tif"}\n'
    (scenes / "jobs.results.jsonl").write_text(earlier)

    def unreachable(*args, **kwargs):
        raise NetworkError("scheduler tcp://127.0.0.1:1: no Dask scheduler answers there", param="scheduler")

    monkeypatch.setattr(run_module, "connect", unreachable)
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--scheduler", "tcp://127.0.0.1:1",
                                      "--skip-invalid"])
    assert res.exit_code == 1 and "no Dask scheduler answers there" in res.output, res.output
    assert (scenes / "jobs.results.jsonl").read_text() == earlier
    monkeypatch.undo()  # with nothing to run, no cluster is asked for: the results are written
    (scenes / "out" / "a.tif").write_bytes(b"not made by geosr batch either")
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--skip-invalid"])
    lines = [json.loads(line) for line in (scenes / "jobs.results.jsonl").read_text().splitlines()]
    assert res.exit_code == 1 and [r["status"] for r in lines] == ["failed"] * 3, res.output


def test_yaml_anchors_and_merge_keys_still_work_beside_the_duplicate_key_check(scenes):
    """The loader that refuses a key given twice first refused every `<<: *anchor` (no constructor for the merge
    tag); a job's own key over a merged one is YAML's override, not a duplicate."""
    (scenes / "jobs.yaml").write_text("defaults: &c\n  x: 2\n  model: bicubic\n  out: 'out/{stem}.tif'\n"
                                      "jobs:\n  - {<<: *c, lr: s0.tif}\n  - {<<: *c, lr: s1.tif, x: 4}\n")
    m = read_manifest(scenes / "jobs.yaml")
    assert m.problems == [] and [(j.x, j.model) for j in m.jobs] == [(2, "bicubic"), (4, "bicubic")]
    (scenes / "jobs.yaml").write_text(  # a merge of a mapping that merges another (found in review: refused)
        "defaults: &d {x: 2, model: bicubic, out: 'out/{stem}.tif'}\njobs:\n  - &j {<<: *d, lr: s0.tif, x: 4}\n"
        "  - {<<: *j, lr: s1.tif}\n")
    assert [j.model for j in read_manifest(scenes / "jobs.yaml").jobs] == ["bicubic", "bicubic"]
    (scenes / "jobs.yaml").write_text("jobs:\n  - {<<: {x: 2}, lr: s0.tif, out: a.tif, out: b.tif}\n")
    with pytest.raises(ManifestError, match="key 'out' given twice in one mapping"):
        read_manifest(scenes / "jobs.yaml")


def test_workers_with_a_scheduler_is_refused_not_ignored(scenes, monkeypatch):
    """`--workers 8 --scheduler ADDRESS` ran on the remote cluster's workers, the 8 taken and ignored without a word:
    refused before anything runs (exit 2), and in Python too."""
    from geosr.errors import OptionError
    from geosr.pipeline.batch import run as run_module
    from geosr.pipeline.batch.run import RunSettings

    monkeypatch.setattr(run_module, "connect", lambda *a, **k: pytest.fail("a cluster was asked for"))
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--scheduler", "tcp://127.0.0.1:1",
                                      "--workers", "8"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "--workers applies to the local cluster only" in said, said
    assert not (scenes / "out" / "a.tif").exists() and not (scenes / "jobs.results.jsonl").exists()
    from distributed import Client

    with pytest.raises(OptionError, match="the cluster behind `client` has its own"):
        RunSettings(client=Client.__new__(Client), workers=2)  # (a client, not connected: none is needed here)
    assert RunSettings(scheduler="tcp://127.0.0.1:1").workers is None and RunSettings(workers=2).workers == 2


def test_an_interrupted_batch_s_json_says_what_it_did(scenes, monkeypatch):
    """`geosr batch --json` stopped by Ctrl-C printed only {"ok": false, "exit_code": 130, "error": "interrupted..."}:
    a pipeline had to read the results manifest to learn what was done. The object now counts the jobs by status
    and names that manifest."""
    import contextlib

    from geosr.pipeline.batch import run as run_module
    from geosr.pipeline.batch.results import job_result

    @contextlib.contextmanager
    def cluster(*args, **kwargs):
        yield object(), "cpu"

    def interrupted(client, jobs, device, retries, done, writer, progress, run_id):
        done[jobs[0].spec.id] = job_result(jobs[0], "ok")
        for pj in jobs[1:]:
            done[pj.spec.id] = job_result(pj, "cancelled", stage="run", error="the batch was interrupted")
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "connect", cluster)
    monkeypatch.setattr(run_module, "cluster_info", lambda *a: dict(workers=1, scheduler="local", dashboard=None))
    monkeypatch.setattr(run_module, "warm", lambda *a: None)
    monkeypatch.setattr(run_module, "_run_on", interrupted)
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n"
                                      "  - {lr: s1.tif, out: out/b.tif, x: 2, model: bicubic}\n"
                                      "  - {lr: s2.tif, out: out/c.tif, x: 2, model: bicubic}\n")
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--json"])
    said = json.loads(res.stdout)
    assert res.exit_code == 130 and said["ok"] is False and said["error"].startswith("interrupted"), res.output
    # the keys of a batch's own --json (found by review: `jobs` held the counts after an interrupt, a list else)
    assert said["counts"] == {"ok": 1, "skipped": 0, "failed": 0, "cancelled": 2, "planned": 0}
    assert sorted(j["status"] for j in said["jobs"]) == ["cancelled", "cancelled", "ok"]
    assert said["results"] == str(scenes / "jobs.results.jsonl") and (scenes / "jobs.results.jsonl").exists()


def test_a_batch_wide_aoi_crs_concerns_only_the_jobs_with_an_aoi(scenes):
    """`geosr batch --aoi-crs EPSG:32633` (a default for the jobs) made every job without an aoi invalid once upscale
    refused `aoi_crs` without `aoi`; a job's own `aoi_crs` without its `aoi` is still refused."""
    import rasterio

    with rasterio.open(scenes / "s0.tif") as ds:
        b = ds.bounds
    box = f"{b.left},{b.bottom},{(b.left + b.right) / 2},{b.top}"
    (scenes / "jobs.yaml").write_text(f"jobs:\n  - {{lr: s0.tif, out: out/a.tif, x: 2, model: bicubic, aoi: '{box}'}}\n"
                                      "  - {lr: s1.tif, out: out/b.tif, x: 2, model: bicubic}\n")
    crs = "EPSG:32633"
    with rasterio.open(scenes / "s0.tif") as ds:
        crs = ds.crs.to_string()
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--aoi-crs", crs, "--dry-run", "--json"])
    assert res.exit_code == 0 and [j["status"] for j in json.loads(res.stdout)["jobs"]] == ["planned"] * 2, res.output
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s1.tif, out: out/b.tif, x: 2, model: bicubic, "
                                      f"aoi_crs: '{crs}'}}\n")
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--dry-run"])
    assert res.exit_code == 2 and "applies to" in res.output, res.output


def test_no_output_may_replace_the_manifest_a_model_file_an_aoi_or_a_class_table(scenes):
    """The check across rows compared outputs with the lr, ref, cd and map of the other rows only: an output named
    like another job's checkpoint, aoi file or class table (or the manifest itself) replaced it, and both jobs
    "succeeded"."""
    (scenes / "mine.safetensors").write_bytes(b"weights")
    (scenes / "area.geojson").write_text("{}")
    (scenes / "classes.json").write_text("{}")
    (scenes / "jobs.yaml").write_text(
        "defaults: {x: 4}\njobs:\n"
        "  - {id: a, lr: s0.tif, out: out/a.tif, model: mine.safetensors, aoi: area.geojson,\n"
        "     cd_classes: classes.json}\n"
        "  - {id: b, lr: s1.tif, out: mine.safetensors}\n"
        "  - {id: c, lr: s2.tif, out: area.geojson}\n"
        "  - {id: d, lr: s0.tif, out: classes.json}\n"
        "  - {id: e, lr: s1.tif, out: jobs.yaml}\n"
        "  - {id: f, lr: s2.tif, out: out/f.tif, model: lite, aoi: '1,2,3,4', cd_classes: binary}\n")
    m = read_manifest(scenes / "jobs.yaml")
    text = [str(p) for p in m.problems]
    for job, name in (("b", "mine.safetensors"), ("c", "area.geojson"), ("d", "classes.json")):
        assert any(f"({job}): out {scenes / name} is an input of jobs.yaml job 1" in t for t in text), text
    assert any(f"(e): out {scenes / 'jobs.yaml'} would write over the manifest" in t for t in text), text
    a, f = m.jobs  # the file options made absolute from the manifest's folder; names, boxes, tables as they are
    assert (a.model, a.aoi, a.cd_classes) == tuple(str(scenes / n) for n in ("mine.safetensors", "area.geojson",
                                                                               "classes.json"))
    assert (f.model, f.aoi, f.cd_classes) == ("lite", "1,2,3,4", "binary")


def test_no_output_s_sidecar_may_replace_the_manifest(scenes):
    """A job whose STAC item (or provenance raster) is the manifest: `run.stac.json` holding a job writing `run.tif`
    is refused as an output over the manifest is (unguarded by a test; found by mutation testing)."""
    (scenes / "run.stac.json").write_text(json.dumps([{"lr": "s0.tif", "out": "run.tif", "x": 2}]))
    m = read_manifest(scenes / "run.stac.json")
    assert not m.jobs
    assert [p.message for p in m.problems] == [f"out {scenes / 'run.tif'} would write over the manifest "
                                               f"{scenes / 'run.stac.json'}"], m.problems


def test_aoi_class_table_and_model_files_are_relative_to_the_manifest_folder(scenes, monkeypatch, tmp_path_factory):
    """The docs say relative paths start from the manifest's folder; `aoi`, `cd_classes` and `model` started from the
    working folder, so a manifest run from elsewhere failed, or silently took the working folder's file of that
    name."""
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / "area.geojson").write_text("{}")  # a decoy in the working folder
    (scenes / "area.geojson").write_text("{}")
    monkeypatch.chdir(elsewhere)
    (scenes / "jobs.csv").write_text("lr,out,aoi,model\ns0.tif,out/a.tif,area.geojson,my/model.safetensors\n")
    job, = read_manifest(scenes / "jobs.csv", defaults={"x": 4}).jobs
    assert job.aoi == str(scenes / "area.geojson") and job.model == str(scenes / "my" / "model.safetensors")


def test_a_glob_never_takes_a_stopped_run_s_work_files_for_scenes(tmp_path, monkeypatch):
    """A batch stopped mid-way leaves OUT.geosr-work/ (chunks, an automatic change mask) beside its output; a
    recursive glob then took those for scenes, so running the same batch again (to go on) failed."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "scenes" / "a_x4.tif.geosr-work"
    (work / "rows_00000_00004").mkdir(parents=True)
    for name in ("scenes/a.tif", "scenes/sub/b.tif", "scenes/a_x4.tif.geosr-work/change-auto-1.tif",
                 "scenes/a_x4.tif.geosr-work/rows_00000_00004/chunk_00000.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    m = read_manifest("scenes/**/*.tif", defaults={"out": "{dir}/{stem}_x4.tif"})
    assert sorted(Path(j.lr).name for j in m.jobs) == ["a.tif", "b.tif"], [j.lr for j in m.jobs]


def test_force_does_not_replace_files_batch_did_not_make(scenes):
    """--force reran up-to-date jobs and also replaced a user's file at the output's path, or beside it (a STAC
    item of theirs), without --overwrite."""
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4, model: bicubic}\njobs:\n"
                                      "  - lr: s0.tif\n  - lr: s1.tif\n")
    (scenes / "out" / "s0.tif").write_text("precious")
    (scenes / "out" / "s1.stac.json").write_text("{}")
    s0, s1 = plan_batch(scenes / "jobs.yaml", force=True).jobs
    assert s0.action == "fail" and "was not made by geosr batch" in s0.reason, s0
    assert s1.action == "fail" and "s1.stac.json: already exists" in s1.reason, s1
    assert [j.action for j in plan_batch(scenes / "jobs.yaml", force=True, overwrite=True).jobs] == ["run", "run"]


def test_an_output_another_job_reads_through_a_vrt_is_refused(scenes):
    """Job A wrote out/x.tif, which job B's LR, a VRT, reads: the manifest compared paths only, so A replaced B's
    input before (or while) B read it."""
    import rasterio

    make_raster(scenes / "out" / "x.tif", (smooth_field(3, 24, 20, seed=5) * 255).astype(np.uint8))
    with rasterio.open(scenes / "out" / "x.tif") as src:
        rasterio.shutil.copy(src, scenes / "mosaic.vrt", driver="VRT")
    (scenes / "jobs.csv").write_text("id,lr,out\nA,s0.tif,out/x.tif\nB,mosaic.vrt,out/b.tif\n")
    plan = plan_batch(scenes / "jobs.csv", x=4, model="bicubic", overwrite=True, skip_invalid=True)
    assert [j.spec.id for j in plan.jobs] == ["B"], plan.jobs
    assert [str(p) for p in plan.invalid] == [
        f"jobs.csv line 2 (A): out {scenes / 'out' / 'x.tif'} is read by an input of jobs.csv line 3 "
        f"({scenes / 'mosaic.vrt'}); write the output to another path"], [str(p) for p in plan.invalid]


def test_a_file_in_another_job_s_work_folder_is_refused(scenes):
    """Job A clears out/a.tif.geosr-work as it ends: job B's LR there was deleted (B then failed for "no such
    file"), job C's output there was reported ok and gone, and a results manifest there was lost with an internal
    error at the end (found in review). Each is refused before anything runs."""
    from geosr.errors import OutputLocationError
    from geosr.pipeline.batch.run import check_results_path

    work = scenes / "out" / "a.tif.geosr-work"
    work.mkdir()
    (work / "in.tif").write_bytes((scenes / "s1.tif").read_bytes())
    (scenes / "jobs.csv").write_text("id,lr,out\nA,s0.tif,out/a.tif\nB,out/a.tif.geosr-work/in.tif,out/b.tif\n"
                                     "C,s2.tif,out/a.tif.geosr-work/c.tif\n")
    plan = plan_batch(scenes / "jobs.csv", x=2, model="bicubic", skip_invalid=True)
    assert [j.spec.id for j in plan.jobs] == ["A"], plan.jobs
    said = "the work folder of the output of jobs.csv line 2, which geosr clears; move it out of that folder"
    assert [str(p) for p in plan.invalid] == [
        f"jobs.csv line 3 (B): an input {work / 'in.tif'} lies in {work}, {said}",
        f"jobs.csv line 4 (C): out {work / 'c.tif'} lies in {work}, {said}"], [str(p) for p in plan.invalid]
    with pytest.raises(OutputLocationError, match=r"r.jsonl: lies in .*a.tif.geosr-work, the work folder of the "
                                                  r"output of jobs.csv line 2"):
        check_results_path(work / "r.jsonl", plan)
    assert (work / "in.tif").is_file()


def test_an_output_over_a_file_of_another_jobs_item_or_band_folder_is_refused(scenes):
    """Job A read a STAC item (its bands and cloud mask) or a folder of band files: a job writing over one of their
    files, or a new band file into the folder, was planned and ran (A's item then read one band, its folder a
    band of another job's output)."""
    from s2_products import SENSING, TILE, band_files, item_over_band_files

    (scenes / "item").mkdir()
    band_files(scenes / "item")
    item_over_band_files(scenes / "item")
    (scenes / "folder").mkdir()
    band_files(scenes / "folder")
    red = f"item/{TILE}_{SENSING}_B04_10m.tif"
    new = f"folder/{TILE}_{SENSING}_B11_10m.tif"
    (scenes / "jobs.csv").write_text(f"id,lr,out\nA,item/item.json,out/a.tif\nB,s0.tif,{red}\nC,folder,out/c.tif\n"
                                     f"D,s1.tif,{new}\nE,s1.tif,folder/e.tif\n")
    plan = plan_batch(scenes / "jobs.csv", x=2, model="bicubic", overwrite=True, skip_invalid=True)
    assert [j.spec.id for j in plan.jobs] == ["A", "C", "E"], plan.jobs
    assert [str(p) for p in plan.invalid] == [
        f"jobs.csv line 3 (B): out {scenes / red} is read by an input of jobs.csv line 2 "
        f"({scenes / 'item/item.json'}); write the output to another path",
        f"jobs.csv line 5 (D): out {scenes / new} is read by an input of jobs.csv line 4 ({scenes / 'folder'}); "
        "write the output to another path"], [str(p) for p in plan.invalid]


def test_a_stray_overview_or_mask_file_at_an_output_s_name_needs_overwrite(scenes):
    """External overviews or a mask at the name of an output that does not exist (`out/s0.tif.ovr`, someone's,
    or left from a deleted file): `geosr upscale` refuses them without overwrite, but batch ran the job, which
    removes them as its output goes into place."""
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4, model: bicubic}\njobs:\n"
                                      "  - lr: s0.tif\n  - lr: s1.tif\n")
    (scenes / "out" / "s0.tif.ovr").write_bytes(b"overviews")
    (scenes / "out" / "s1.provenance.tif.msk").write_bytes(b"mask")
    s0, s1 = plan_batch(scenes / "jobs.yaml").jobs
    assert s0.action == "fail" and "s0.tif.ovr: already exists" in s0.reason and "GDAL external overviews" \
        in s0.reason, s0.reason
    assert s1.action == "fail" and "s1.provenance.tif.msk: already exists" in s1.reason, s1.reason
    assert [j.action for j in plan_batch(scenes / "jobs.yaml", overwrite=True).jobs] == ["run", "run"]


def test_the_files_of_a_diffusion_on_backbone_model_and_a_manifest_under_home_are_checked(scenes, monkeypatch):
    """(Found in review of the fix above.) `model: default+bb.safetensors` kept its backbone's path relative to
    the working folder, and no output was checked against it; a manifest given as `~/jobs.yaml` could be
    overwritten by its own job; a mistyped box (three numbers) was read as a file in the manifest's folder."""
    (scenes / "bb.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("HOME", str(scenes))
    (scenes / "jobs.yaml").write_text(
        "defaults: {x: 4}\njobs:\n"
        "  - {id: a, lr: s0.tif, out: out/a.tif, model: default+bb.safetensors, aoi: '119.9,32.3,120.1'}\n"
        "  - {id: c, lr: s1.tif, out: bb.safetensors}\n"
        "  - {id: e, lr: s2.tif, out: jobs.yaml}\n")
    m = read_manifest("~/jobs.yaml")
    text = [str(p) for p in m.problems]
    assert any(f"(c): out {scenes / 'bb.safetensors'} is an input of jobs.yaml job 1" in t for t in text), text
    assert any("(e): out " in t and "would write over the manifest" in t for t in text), text
    a, = m.jobs
    assert a.model == f"default+{scenes / 'bb.safetensors'}" and a.aoi == "119.9,32.3,120.1"


def test_a_manifest_in_another_folder_is_named_whole_and_a_semicolon_csv_is_told_so(tmp_path):
    """A manifest with no jobs in a subfolder read "site/empty.yaml: 1 invalid job, nothing was run: empty.yaml:
    holds no jobs" (its problem, filed under the file's name, taken for a row's); a CSV separated by semicolons
    said only that the header has no lr column."""
    (tmp_path / "site").mkdir()
    empty = tmp_path / "site" / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ManifestError) as err:
        read_manifest(empty)
    assert str(err.value) == f"{empty}: holds no jobs (give jobs: or glob:)"
    semi = tmp_path / "site" / "semi.csv"
    semi.write_text("lr;out\na.tif;b.tif\n")
    with pytest.raises(ManifestError, match="separated by ';'; use commas"):
        read_manifest(semi)


def test_a_batch_with_failed_jobs_says_so_in_one_line_when_quiet_and_in_its_json(scenes):
    """Found by review: `batch -q` with a failed job exited 1 with nothing on stderr, and its --json had `ok`
    false without the `error` every other command's failure has."""
    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    (scenes / "out" / "a.tif").write_bytes(b"not made by geosr batch")  # fails its check
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "-q"])
    assert res.exit_code == 1 and res.stdout == "", res.output
    assert res.stderr.strip() == f"geosr: error: 1 failed of 1 job (each job's error: {scenes / 'jobs.results.jsonl'})"
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--json"])
    said = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert res.exit_code == 1 and said["ok"] is False and said["error"].startswith("1 failed of 1 job")
    assert [j["status"] for j in said["jobs"]] == ["failed"]


def test_a_glob_s_refused_rows_keep_their_place_in_the_results(scenes):
    """The results of a glob listed its refused files after all the others (`s0, s2, bad`) instead of in the glob's
    own order (`bad, s0, s2`), which the docs promise."""
    from geosr.pipeline.batch import batch

    (scenes / "s1.tif").write_bytes(b"not a raster")  # between the two good ones
    (scenes / "g.json").write_text(json.dumps({"defaults": {"x": 2, "model": "bicubic", "out": "out/{stem}.tif"},
                                               "glob": "s*.tif"}))
    done = batch(scenes / "g.json", skip_invalid=True, dry_run=True)
    assert [(r.lr and Path(r.lr).name, r.status) for r in done.jobs] == [
        ("s0.tif", "planned"), ("s1.tif", "failed"), ("s2.tif", "planned")], done.jobs


def test_steps_0_for_a_diffusion_model_on_a_backbone_is_a_job_setting(scenes):
    """`steps: 0` (the backbone's prediction alone, as `upscale -m default+lite --steps 0` runs it) was refused by the
    manifest ("must be at least 1"); a model that cannot take it is still refused, by its check."""
    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4, steps: 0}\njobs:\n"
                                      "  - {lr: s0.tif, model: default+lite}\n  - {lr: s1.tif, model: default}\n"
                                      "  - {lr: s2.tif, model: default+lite, steps: -1}\n")
    plan = plan_batch(scenes / "jobs.yaml", skip_invalid=True)
    assert [j.spec.id for j in plan.jobs if j.action == "run"] == ["s0"], plan.jobs
    said = [str(p) for p in plan.invalid]
    assert len(said) == 2 and "steps" in said[0], said
    assert "steps must be a whole number of at least 0, not -1" in said[1], said


def test_the_python_api_s_own_keyword_mistakes_are_option_errors_and_a_box_is_taken(scenes):
    """A keyword plan_batch does not know was a ManifestError of "1 invalid job ... the command line", and aoi as
    four numbers (as upscale takes it) "expects a single value" (found in review)."""
    from geosr.errors import OptionError

    (scenes / "m.yaml").write_text("jobs:\n  - {lr: s0.tif, out: o.tif, x: 2, model: bicubic}\n")
    with pytest.raises(OptionError) as told:
        plan_batch(scenes / "m.yaml", bogus=1)
    assert not isinstance(told.value, ManifestError) and "the command line" not in str(told.value)
    assert "'bogus'" in str(told.value)
    with rasterio.open(scenes / "s0.tif") as ds:
        box = tuple(ds.bounds)
    plan = plan_batch(scenes / "m.yaml", aoi=box, aoi_crs=str(ds.crs))
    assert [j.action for j in plan.jobs] == ["run"] and plan.jobs[0].spec.aoi == ",".join(map(str, box))


@pytest.mark.parametrize("option", [{"x": 1}, {"compress": "zzz"}, {"sampler": "zz"}, {"split_windows": -1}])
def test_a_bad_value_of_the_caller_is_one_refusal_not_every_row_s(scenes, option):
    """`geosr batch 'sk/*.tif' -x 1 --skip-invalid` failed every job ("x: 1 is not a supported scale factor" once
    per row), exit 1, and rewrote an earlier results manifest's ok lines (found in review): the caller's own values
    are refused once, before any row is read."""
    from geosr.errors import OptionError

    (scenes / "jobs.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4}\nglob: 's*.tif'\n")
    with pytest.raises(OptionError) as told:
        plan_batch(scenes / "jobs.yaml", skip_invalid=True, **option)
    assert not isinstance(told.value, ManifestError) and "s0" not in str(told.value), told.value
    # good values of the caller, reference settings without a reference among them, plan as before; and so does a
    # setting the rows' own completes (a level for the manifest's ZSTD: refused against DEFLATE once; review)
    assert plan_batch(scenes / "jobs.yaml", compress="lzw", ref_bands="1,2,3").jobs
    (scenes / "zstd.yaml").write_text("defaults: {out: 'out/{stem}.tif', x: 4, compress: ZSTD}\nglob: 's*.tif'\n")
    assert plan_batch(scenes / "zstd.yaml", compress_level=15).jobs


def test_yaml_values_are_read_as_written_not_as_yaml_1_1_numbers(scenes):
    """Found in review: PyYAML's YAML 1.1 resolvers made the ids 0042 34, 1:30 90, NO False and 1.10 1.1 (so a job
    `id: "34"` clashed with `id: 0042`), and `seed: 010` 8 where the same CSV row and `--seed 010` read 10."""
    (scenes / "jobs.yaml").write_text("""
defaults: {x: 2, model: bicubic, seed: 010, overwrite: no, aoi_crs: EPSG:4326}
jobs:
  - {lr: s0.tif, out: out/o1.tif, id: 0042}
  - {lr: s0.tif, out: out/o2.tif, id: 1:30}
  - {lr: s0.tif, out: out/o3.tif, id: NO}
  - {lr: s0.tif, out: out/o4.tif, id: 1.10, bands: [3, 2, 1], lr_consistency: off}
  - {lr: s0.tif, out: out/o5.tif, id: "34", overwrite: yes, x: 0x4, id_: 1}
""")
    m = read_manifest(scenes / "jobs.yaml")
    assert [j.id for j in m.jobs] == ["0042", "1:30", "NO", "1.10"], m.problems
    assert {j.options.sampler.seed for j in m.jobs} == {10}
    assert not any(j.options.output_config.overwrite for j in m.jobs)
    assert m.jobs[3].options.bands == "3,2,1" and m.jobs[3].options.sampler.lr_consistency == "off"
    assert [str(p) for p in m.problems if "0x4" in str(p)], m.problems  # a hexadecimal scale: not a whole number
    (scenes / "jobs.csv").write_text("lr,out,seed\ns0.tif,out/o1.tif,010\n")
    assert read_manifest(scenes / "jobs.csv").jobs[0].options.sampler.seed == 10
    # YAML's other words for false, and a whole 4.0, as they read before (and as JSON's false and 4.0 read)
    (scenes / "more.yaml").write_text("""
defaults: {model: bicubic, out: "out/{stem}_{x}.tif"}
jobs:
  - {lr: s0.tif, x: 4.0, lr_consistency: false}
  - {lr: s1.tif, x: 2, lr_consistency: Off}
  - {lr: s2.tif, x: 2, lr_consistency: no}
  - {lr: s2.tif, x: 4.5, out: out/bad.tif}
""")
    m = read_manifest(scenes / "more.yaml")
    assert [j.options.scale for j in m.jobs] == [4, 2, 2]
    assert {j.options.sampler.lr_consistency for j in m.jobs} == {"off"}
    assert [p.message for p in m.problems] == ["x: '4.5' is not a whole number"]


def test_a_job_s_null_drops_what_the_defaults_give_it(scenes):
    """Found in review: a job could not drop a reference its defaults (or the command line) gave every job: its
    `ref: null` was skipped, and the job refused with "leave it out". A null is the option unset, as upscale has
    it; the caller's own None (the library's keyword default) is no option."""
    (scenes / "jobs.yaml").write_text("""
defaults: {x: 2, model: reference-paste, ref: s1.tif, out: "out/{stem}.tif"}
jobs:
  - {lr: s0.tif}
  - {lr: s2.tif, model: bicubic, ref: null, cd: }
""")
    m = read_manifest(scenes / "jobs.yaml", defaults={"seed": None})
    assert not m.problems, m.problems
    assert [j.options.ref for j in m.jobs] == [str(scenes / "s1.tif"), None]
    # a JSON-lines row's null is a table's gap (pandas writes NaN so), as a CSV's empty cell: the defaults stand
    (scenes / "jobs.jsonl").write_text('{"lr": "s0.tif", "out": "out/j.tif", "x": null, "ref": null}\n')
    m = read_manifest(scenes / "jobs.jsonl", defaults={"x": 4, "ref": "s1.tif", "model": "reference-paste"})
    assert not m.problems and (m.jobs[0].options.scale, m.jobs[0].options.ref) == (4, str(scenes / "s1.tif"))


def test_cd_keywords_in_any_case_in_a_manifest_and_its_defaults(scenes):
    """`cd: AUTO` (or `None`) in a manifest, or `--cd AUTO` for every job, was "<manifest folder>/AUTO: no such file"
    while upscale takes them (found in review); a file of that name beside the manifest is still that file."""
    (scenes / "jobs.csv").write_text("lr,ref,cd,out,x\ns0.tif,s1.tif,AUTO,out/a.tif,2\ns0.tif,s1.tif,None,out/b.tif,2\n"
                                     "s0.tif,s1.tif,,out/c.tif,2\n")
    m = read_manifest(scenes / "jobs.csv", defaults={"cd": "Auto"})
    assert not m.problems and [j.options.cd for j in m.jobs] == ["auto", "none", "auto"], m.problems
    (scenes / "None").write_bytes(b"")
    assert read_manifest(scenes / "jobs.csv").jobs[1].options.cd == str(scenes / "None")
    # another path written None is a path beside the manifest (it became a bare "none" read in the working folder)
    (scenes / "refs.csv").write_text("lr,ref,out,x\ns0.tif,NONE,out/a.tif,2\n")
    assert read_manifest(scenes / "refs.csv").jobs[0].options.ref == str(scenes / "NONE")


def test_the_caller_s_misspelt_settings_are_suggested_and_named_by_their_flags(scenes):
    """Found in review: `workers` misspelt `worker` (and `retries`, `scheduler`, `make_dirs`) got no suggestion,
    and `--split-windows -1` was refused as "split_windows must be ...", where `--retries -1` names its flag."""
    from geosr.pipeline.batch import batch
    from geosr.pipeline.batch.manifest import CALLER_KEYWORDS
    from geosr.pipeline.batch.run import RunSettings

    (scenes / "jobs.yaml").write_text("jobs:\n  - {lr: s0.tif, out: out/a.tif, x: 2, model: bicubic}\n")
    for wrong, right in (("worker", "workers"), ("retry", "retries"), ("schedular", "scheduler"),
                         ("make_dir", "make_dirs")):
        with pytest.raises(OptionError, match=f"unknown option '{wrong}' \\(did you mean {right}\\?\\)"):
            batch(scenes / "jobs.yaml", dry_run=True, **{wrong: 1})
    import inspect

    taken = {f for f in RunSettings.__dataclass_fields__} | {
        n for fn in (batch, plan_batch) for n, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY}
    assert set(CALLER_KEYWORDS) == taken - {"overwrite"}  # (overwrite: a job option too)
    with pytest.raises(OptionError, match=r"unknown option 'workers' \(a setting of the batch's run, which this call "
                                          r"does not take\)"):  # (it said "did you mean workers?")
        plan_batch(scenes / "jobs.yaml", workers=2)
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--split-windows", "-1", "--dry-run"])
    assert res.exit_code == 2 and "error: --split-windows: must be a whole number of at least 0, not -1" in res.output
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "--split-windows", "-1", "--compress",
                                      "zz", "--dry-run"])
    assert "--split-windows: must be a whole number of at least 0, not -1; --compress: 'zz' is not one of" in \
        res.output, res.output
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.yaml"), "-x", "1", "--dry-run"])
    assert "error: -x: 1 is not a supported scale factor" in res.output, res.output


def test_a_dry_run_s_jobs_beyond_the_table_are_counted_as_planned(scenes):
    """Found in review: a dry run of 33 jobs ended "... and 3 more ok or skipped jobs (see the results manifest)",
    which a dry run never writes."""
    rows = "".join(f"s0.tif,out/o{i}.tif\n" for i in range(33))
    (scenes / "jobs.csv").write_text("lr,out\n" + rows)
    res = CliRunner().invoke(_cli(), ["batch", str(scenes / "jobs.csv"), "-x", "2", "-m", "bicubic", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "... and 3 more jobs: 3 planned\n" in res.output, res.output
    assert not (scenes / "jobs.results.jsonl").exists()


def test_a_path_written_with_windows_backslashes_is_refused_saying_so(scenes):
    """Found by review: `out\\w1.tif` (the folder out/ there) was written as a file named `out\\w1.tif` beside the
    manifest, exit 0; `in\\s0.tif` was "no such file". A backslash is part of a file's name here: refused saying
    so, except for an input of that very name."""
    (scenes / "odd\\name.tif").symlink_to(scenes / "s0.tif")
    (scenes / "jobs.csv").write_text("id,lr,out,x\nw1,s0.tif,out\\w1.tif,2\nw2,.\\s1.tif,out/w2.tif,2\n"
                                     "w3,odd\\name.tif,out/{stem}_x{x}.tif,2\nw4,s2.tif,out/w4.tif,2\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(scenes / "jobs.csv").raise_if_invalid()
    said = str(err.value)
    assert "2 invalid jobs" in said, said
    assert "(w1): out out\\w1.tif: holds a backslash" in said and "write folders with /" in said
    assert f"(w2): lr {scenes}/.\\s1.tif: holds a backslash" in said and "(w3)" not in said


def test_outputs_that_differ_only_in_letter_case_are_refused(scenes):
    """Scene.tif and scene.tif are one file on Windows' and macOS' file systems: both jobs wrote it, both reported
    ok (found in review). Refused everywhere, so a manifest means the same on every system; other outputs run."""
    (scenes / "m.csv").write_text(
        "id,lr,out,x,model\n"
        "j1,s0.tif,out/Scene.tif,2,bicubic\n"
        "j2,s1.tif,out/scene.tif,2,bicubic\n"
        "j3,s1.tif,OUT/b.tif,2,bicubic\n"
        "j4,s0.tif,out/A.tif,x,bicubic\n"     # refused for its scale, its name still claimed
        "j5,s0.tif,out/a.TIF,2,bicubic\n"
        "j6,s2.tif,out/other.tif,2,bicubic\n"
        "j7,s2.tif,out/Straße.tif,2,bicubic\n"   # two names on every system (casefold() made them one)
        "j8,s1.tif,out/Strasse.tif,2,bicubic\n")
    m = read_manifest(scenes / "m.csv")
    text = "\n".join(map(str, m.problems))
    assert [j.id for j in m.jobs] == ["j1", "j3", "j6", "j7", "j8"], text
    assert (f"line 3 (j2): out {scenes / 'out/scene.tif'} differs from {scenes / 'out/Scene.tif'}, the output of "
            "m.csv line 2, only in letter case: one file on Windows and macOS, whose file systems ignore case") in text
    assert f"line 6 (j5): out {scenes / 'out/a.TIF'} differs from {scenes / 'out/A.tif'}, the output of m.csv line 5" \
        in text
    assert "line 4 (j3)" not in text  # OUT/b.tif: a name of its own in either folder


def test_a_nul_character_in_a_path_refuses_its_row(scenes):
    """YAML's "\\0" in a path was an internal error (os.stat: embedded null byte), exit 1, the batch not planned."""
    (scenes / "m.yaml").write_text(
        'jobs:\n'
        '  - {lr: s0.tif, out: "out/a\\0b.tif", x: 2, model: bicubic}\n'
        '  - {lr: "s1\\0.tif", out: out/b.tif, x: 2, model: bicubic}\n'
        '  - {lr: s2.tif, out: out/c.tif, x: 2, model: bicubic}\n')
    m = read_manifest(scenes / "m.yaml")
    text = "\n".join(map(str, m.problems))
    assert [j.id for j in m.jobs] == ["c"], text
    assert "job 1 " in text and "out: holds a NUL character, which no file's name nor option can" in text
    assert "job 2 " in text and "lr: holds a NUL character" in text

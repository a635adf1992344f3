"""export-deepstream: the written nvinfer config uses only documented keys with the documented value meanings,
its normalisation reproduces the runtime's preprocessing, and the files it names are there. DeepStream does
not run here.

Documented keys: the Gst-nvinfer configuration table,
https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html ("Gst-nvinfer Configuration
File Specifications"), whose key names are the CONFIG_GROUP_INFER_* strings of DeepStream's
sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h. Value meanings from NVIDIA's sample
samples/configs/deepstream-app/config_infer_primary.txt: network-mode 0=FP32, 1=INT8, 2=FP16; cluster-mode
1=DBSCAN, 2=NMS, 3=DBSCAN+NMS hybrid, 4=none; model-color-format 0=RGB (1=BGR, 2=GRAY in the parser); the
preprocessing ``y = net-scale-factor * (x - mean)`` from the plugin page.
"""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_main
from handoff_fixtures import SIZE, add_engine, make_bundle, nms_bundle

pytest.importorskip("onnx")

PROPERTY_KEYS = {
    "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
    "output-tensor-meta", "enable-dla", "use-dla-core", "batch-size", "tensor-meta-pool-size", "network-mode",
    "model-engine-file", "int8-calib-file", "workspace-size", "output-blob-names", "is-classifier", "network-type",
    "force-implicit-batch-dim", "infer-dims", "output-io-formats", "layer-device-precision", "model-color-format",
    "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio", "symmetric-padding", "scaling-filter",
    "scaling-compute-hw", "network-input-order", "input-tensor-from-meta", "custom-lib-path", "parse-bbox-func-name",
    "parse-bbox-instance-mask-func-name", "engine-create-func-name", "parse-classifier-func-name",
    "custom-network-config", "model-file", "proto-file", "uff-file", "uff-input-order", "input-dims",
    "uff-input-dims", "uff-input-blob-name", "tlt-encoded-model", "tlt-model-key", "onnx-file",
    "num-detected-classes", "enable-dbscan", "cluster-mode", "classifier-type", "classifier-threshold",
    "classifier-async-mode", "segmentation-threshold", "segmentation-output-order", "output-instance-mask",
    "input-object-min-width", "input-object-min-height", "input-object-max-width", "input-object-max-height",
    "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids",
}
CLASS_ATTRS_KEYS = {
    "threshold", "pre-cluster-threshold", "post-cluster-threshold", "eps", "group-threshold", "minboxes",
    "dbscan-min-score", "roi-top-offset", "roi-bottom-offset", "detected-min-w", "detected-min-h", "detected-max-w",
    "detected-max-h", "border-color", "bg-color", "nms-iou-threshold", "topk",
}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
CLUSTER_NMS, CLUSTER_NONE = 2, 4


def export(bundle: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> configparser.SectionProxy:
    code, _, err = run_main(["export-deepstream", str(bundle), "--out", str(out), *extra], capsys)
    assert code == 0, err
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(out / "config_infer_primary.txt")
    assert set(cp.sections()) == {"property", "class-attrs-all"}
    prop = cp["property"]
    assert set(prop) <= PROPERTY_KEYS, set(prop) - PROPERTY_KEYS
    assert set(cp["class-attrs-all"]) <= CLASS_ATTRS_KEYS, set(cp["class-attrs-all"]) - CLASS_ATTRS_KEYS
    for key in ("onnx-file", "labelfile-path", "model-engine-file"):  # relative to the config file's folder
        if key in prop:
            assert (out / prop[key]).is_file(), key
    return prop


def test_detector_config_matches_the_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b", precision="fp16")
    out = tmp_path / "ds"
    prop = export(bundle, out, capsys)
    attrs = configparser.ConfigParser(interpolation=None)
    attrs.read(out / "config_infer_primary.txt")
    assert prop["network-mode"] == str(NETWORK_MODE["fp16"]) and prop["network-type"] == "0"
    assert prop["num-detected-classes"] == "3" and prop["batch-size"] == "1"
    assert prop["model-color-format"] == "0"  # the sidecar's default colour order is RGB
    assert prop["maintain-aspect-ratio"] == "1" and prop["symmetric-padding"] == "1"  # letterbox
    assert prop["cluster-mode"] == str(CLUSTER_NMS) and prop["output-blob-names"] == "output0"
    assert dict(attrs["class-attrs-all"]) == {"pre-cluster-threshold": "0.3", "nms-iou-threshold": "0.5",
                                              "topk": "50"}
    assert (out / prop["labelfile-path"]).read_text().splitlines() == ["cat", "dog", "bird"]
    assert (out / prop["onnx-file"]).read_bytes() == (bundle / "model.onnx").read_bytes()
    text = (out / "config_infer_primary.txt").read_text()
    assert "custom bbox parser" in text and "DeepStream-Yolo" in text and "parse-bbox-func-name" in text
    assert "DeepStream-Yolo" in (out / "README.md").read_text()


def test_normalisation_reproduces_the_runtime_preprocessing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from edgevision.runtime.preprocess import to_tensor

    mean, std = [0.485, 0.456, 0.406], [0.25, 0.25, 0.25]
    bundle = make_bundle(tmp_path / "b", input_extra={"mean": mean, "std": std, "color": "bgr"})
    prop = export(bundle, tmp_path / "ds", capsys)
    assert prop["model-color-format"] == "1"
    k = float(prop["net-scale-factor"])
    offsets = np.array([float(v) for v in prop["offsets"].split(";")])
    frame = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)  # BGR, already net size
    runtime = to_tensor(frame, mean=mean, std=std, rgb=False, scale=1 / 255)[0]  # [3, H, W] in BGR order
    nvinfer = k * (frame.transpose(2, 0, 1).astype(np.float64) - offsets[:, None, None])  # y = k * (x - mean)
    np.testing.assert_allclose(nvinfer, runtime, rtol=1e-5, atol=1e-5)


def test_nms_layout_needs_no_clustering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("edgevision.toolkit.nms_graph", reason="the NMS graph is the toolkit's (Python >= 3.10)",
                        exc_type=ImportError)
    prop = export(nms_bundle(tmp_path / "b"), tmp_path / "ds", capsys)
    assert prop["cluster-mode"] == str(CLUSTER_NONE)
    assert prop["output-blob-names"] == "num_dets;boxes;scores;classes"  # the EfficientNMS parser's order
    assert "NvDsInferParseCustomEfficientNMS" in (tmp_path / "ds" / "config_infer_primary.txt").read_text()


def test_engine_and_dynamic_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b", batch="batch", task="pose", precision="fp32")
    plan = add_engine(bundle, precision="int8")
    prop = export(bundle, tmp_path / "ds", capsys, "--engine", "jetson-orin-nano-8gb.fp16.plan", "--batch-size", "4")
    assert (tmp_path / "ds" / prop["model-engine-file"]).read_bytes() == plan
    assert prop["network-mode"] == str(NETWORK_MODE["int8"])  # the shipped engine's precision
    assert prop["batch-size"] == "4"
    assert "keypoints" in (tmp_path / "ds" / "config_infer_primary.txt").read_text()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def user_error(args: list[str]) -> str:
        code, _, err = run_main(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err.strip()

    out = tmp_path / "ds"
    bundle = make_bundle(tmp_path / "b", input_extra={"std": [0.2, 0.25, 0.3]})
    assert "input.std" in user_error(["export-deepstream", str(bundle), "--out", str(out)])
    assert not out.exists()
    fixed = make_bundle(tmp_path / "fixed")
    assert "fixed batch of 1" in user_error(["export-deepstream", str(fixed), "--out", str(out), "--batch-size", "2"])
    (fixed / "model.onnx").unlink()
    assert "model.onnx" in user_error(["export-deepstream", str(fixed), "--out", str(out)])
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    ok = make_bundle(tmp_path / "ok")
    assert "--force" in user_error(["export-deepstream", str(ok), "--out", str(out)])
    assert (out / "keep.txt").read_text() == "mine"
    export(ok, out, capsys, "--force")
    assert not (out / "keep.txt").exists()
    export(ok, out, capsys)  # over its own previous output: no --force needed
    assert json.loads((out / "edgevision-handoff.json").read_text())["command"] == "export-deepstream"

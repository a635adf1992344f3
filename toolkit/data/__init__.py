"""Datasets: COCO / YOLO-format readers, the built-in synthetic generator, torch dataset + transforms.

Kept import-free on purpose (``import edgevision.toolkit.data`` must not pull in torch or OpenCV); import
the submodules: ``coco`` (``load_coco``, ``CocoDataset``, ``write_coco_json``), ``yolo`` (``load_yolo``),
``yolo_write`` (``write_yolo``), ``synthetic`` (``generate_detection_dataset``, ``render_scene``,
``CLASS_NAMES``), ``dataset`` (``DetectionDataset``, ``collate_detection``) and ``augment``
(``AugmentConfig``).
"""

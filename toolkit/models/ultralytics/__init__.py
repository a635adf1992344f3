"""Ultralytics YOLOv8 / YOLO11 (detect, pose) as an edgevision model source; see ``load.py`` and ``net.py``.

Importing this package does not import Ultralytics (an optional extra, ``edgevision[ultralytics]``).
"""

"""Compression stages: prune (structured / 2:4), distill (or plain fine-tune), quantize (INT8 Q/DQ, FP16)."""

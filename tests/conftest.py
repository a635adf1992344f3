"""Shared test helpers live beside this file (``trt_fake.py``): pytest puts this folder on ``sys.path``
because this conftest is here, so ``from trt_fake import FakeTrt`` works from every test folder."""

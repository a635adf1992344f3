"""The tracker's Kalman filter: a hand-computed predict/update, and ByteTrack's full 8x8 matrix form as reference."""

from __future__ import annotations

import numpy as np

from edgevision.runtime.tracking import kalman


def test_predict_then_update_matches_a_hand_computation() -> None:
    # box centred (100, 50), 20 x 40: xyah (100, 50, 0.5, 40); noise stds are h/20 = 2 (position), h/160 = 0.25
    z0 = kalman.xyxy_to_xyah(np.array([[90, 30, 110, 70]]))
    np.testing.assert_allclose(z0, [[100, 50, 0.5, 40]])
    mean, cov = kalman.initiate(z0)
    # initial variances: (2 * 2)^2 = 16 for x, (10 * 0.25)^2 = 6.25 for vx
    assert cov[0, kalman.PP, 0] == 16 and cov[0, kalman.VV, 0] == 6.25 and cov[0, kalman.PV, 0] == 0
    mean, cov = kalman.predict(mean, cov)
    # pp = 16 + 6.25 + 2^2 = 26.25; pv = 6.25; vv = 6.25 + 0.25^2 = 6.3125; zero velocity: mean unchanged
    np.testing.assert_allclose(mean[0], [100, 50, 0.5, 40, 0, 0, 0, 0])
    np.testing.assert_allclose(cov[0, :, 0], [26.25, 6.25, 6.3125])
    # measure x = 112.1: S = 26.25 + 2^2 = 30.25, gain (26.25, 6.25) / 30.25, innovation 12.1
    mean, cov = kalman.update(mean, cov, np.array([[112.1, 50, 0.5, 40]]))
    np.testing.assert_allclose(mean[0, [0, 4]], [100 + 10.5, 2.5])
    np.testing.assert_allclose(mean[0, [1, 2, 3, 5, 6, 7]], [50, 0.5, 40, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(cov[0, :, 0], [26.25 - 26.25**2 / 30.25, 6.25 - 26.25 * 6.25 / 30.25,
                                              6.3125 - 6.25**2 / 30.25])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(mean), [[100.5, 30, 120.5, 70]])


def _bytetrack_reference(zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ByteTrack's KalmanFilter (8x8 matrices, one track), transcribed: initiate on zs[0], then predict + update."""
    sp, sv = 1 / 20, 1 / 160
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    hm = np.eye(4, 8)
    z = zs[0]
    mean = np.r_[z, np.zeros(4)]
    std = [2 * sp * z[3], 2 * sp * z[3], 1e-2, 2 * sp * z[3], 10 * sv * z[3], 10 * sv * z[3], 1e-5, 10 * sv * z[3]]
    cov = np.diag(np.square(std))
    for z in zs[1:]:
        h = mean[3]
        q = np.diag(np.square([sp * h, sp * h, 1e-2, sp * h, sv * h, sv * h, 1e-5, sv * h]))
        mean, cov = f @ mean, f @ cov @ f.T + q
        h = mean[3]
        r = np.diag(np.square([sp * h, sp * h, 1e-1, sp * h]))
        s = hm @ cov @ hm.T + r
        k = cov @ hm.T @ np.linalg.inv(s)
        mean = mean + k @ (z - hm @ mean)
        cov = cov - k @ s @ k.T
    return mean, cov


def test_batched_blocks_equal_bytetracks_matrix_filter() -> None:
    rng = np.random.default_rng(0)
    tracks = 5
    start = np.c_[rng.uniform(0, 600, (tracks, 2)), rng.uniform(0.5, 1.5, tracks), rng.uniform(20, 120, tracks)]
    vel = np.c_[rng.uniform(-5, 5, (tracks, 2)), np.zeros(tracks), rng.uniform(-0.5, 0.5, tracks)]
    zs = np.stack([start + t * vel + rng.normal(0, 1, start.shape) * [1, 1, 0.01, 1] for t in range(12)], 1)
    mean, cov = kalman.initiate(zs[:, 0])
    for t in range(1, zs.shape[1]):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, zs[:, t])
    for i in range(tracks):
        ref_mean, ref_cov = _bytetrack_reference(zs[i])
        np.testing.assert_allclose(mean[i], ref_mean, rtol=1e-9, atol=1e-9)
        for c in range(4):  # the block of coordinate c, and nothing outside the blocks
            np.testing.assert_allclose([ref_cov[c, c], ref_cov[c, c + 4], ref_cov[c + 4, c + 4]], cov[i, :, c],
                                       rtol=1e-9, atol=1e-12)
        block = np.zeros((8, 8), bool)
        for c in range(4):
            block[np.ix_([c, c + 4], [c, c + 4])] = True
        assert np.abs(ref_cov[~block]).max() < 1e-12

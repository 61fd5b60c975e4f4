"""The epoch plan of streamed shards: shard dealing, batches per rank, stream positions, the shuffle buffer."""

from __future__ import annotations

import numpy as np
import pytest

from maedfer.data.shards import (
    assign_shards,
    batches_per_stream,
    consumed_per_stream,
    shard_steps_per_epoch,
    shuffle_records,
)


def test_assign_shards_deals_every_shard_once_and_balances_ranks_then_workers() -> None:
    counts = [4, 4, 4, 4, 4, 4, 4, 2]
    for epoch in range(5):
        plan = assign_shards(counts, epoch, seed=3, world_size=2, num_workers=2)
        dealt = sorted(s for stream in plan for s in stream)
        assert dealt == list(range(8))
        loads = [sum(counts[s] for s in stream) for stream in plan]
        assert max(loads) - min(loads) <= 4  # greedy: never more than one shard apart
    # without shuffling: the index order, each shard to the least-loaded rank (epoch 0: rank 0 first on ties), then
    # to its least-loaded worker
    assert assign_shards([3, 1, 1, 1], 0, 0, 2, 1, shuffle=False) == [[0], [1, 2, 3]]
    assert assign_shards([1, 1, 1, 1, 1], 0, 0, 2, 2, shuffle=False) == [[0, 4], [2], [1], [3]]
    # 1100 equal shards on 16 ranks x 10 workers: ranks get 68 or 69 shards (not 60 or 70, as dealing to the 160
    # streams alone would give), and the ranks a shard short change with the epoch
    short = []
    for epoch in (0, 1):
        plan = assign_shards([1000] * 1100, epoch, 0, 16, 10)
        per_rank = [sum(len(s) for s in plan[r * 10:(r + 1) * 10]) for r in range(16)]
        assert sorted(set(per_rank)) == [68, 69]
        short.append({r for r, n in enumerate(per_rank) if n == 68})
    assert short[0] != short[1]
    # the order changes with the epoch and is a pure function of (seed, epoch)
    orders = {tuple(map(tuple, assign_shards(counts, e, 3, 2, 2))) for e in range(6)}
    assert len(orders) > 1
    assert assign_shards(counts, 2, 3, 2, 2) == assign_shards(counts, 2, 3, 2, 2)


def test_batches_and_steps_per_epoch() -> None:
    counts = [5, 5, 5, 3]
    plan = [[0, 3], [1], [2]]
    assert batches_per_stream(counts, plan, 2) == [4, 2, 2]  # 8 // 2, 5 // 2, 5 // 2
    # 1 rank x 1 stream: everything but the last partial batch
    assert shard_steps_per_epoch(counts, world_size=1, num_workers=0, batch_size=4, seed=0, epochs=3) == 18 // 4
    # 2 ranks x 2 workers with 4 shards: one shard per stream; the rank with the 3-clip shard sets the pace
    # (5 // 2 + 3 // 2 batches)
    assert shard_steps_per_epoch(counts, world_size=2, num_workers=2, batch_size=2, seed=0, epochs=2) == 2 + 1
    with pytest.raises(ValueError, match="no full batch"):
        shard_steps_per_epoch([2], world_size=2, num_workers=1, batch_size=2, seed=0, epochs=1)  # rank 1: none


def test_consumed_per_stream_follows_the_round_robin_of_the_loader() -> None:
    # streams with 3, 1 and 2 batches: order s0 s1 s2 s0 s2 s0
    assert consumed_per_stream([3, 1, 2], 0) == ([0, 0, 0], 0)
    assert consumed_per_stream([3, 1, 2], 2) == ([1, 1, 0], 2)
    assert consumed_per_stream([3, 1, 2], 4) == ([2, 1, 1], 2)  # s1 is exhausted: s2 comes next
    assert consumed_per_stream([3, 1, 2], 5) == ([2, 1, 2], 0)
    assert consumed_per_stream([3, 1, 2], 6)[0] == [3, 1, 2]
    with pytest.raises(ValueError):
        consumed_per_stream([1, 1], 3)


def test_shuffle_buffer_is_a_deterministic_permutation() -> None:
    items = list(range(50))
    shuffled = list(shuffle_records(iter(items), 8, np.random.default_rng(1)))
    assert sorted(shuffled) == items and shuffled != items
    assert shuffled == list(shuffle_records(iter(items), 8, np.random.default_rng(1)))
    # a buffer of 8 holds items 0..7 + p when output p is drawn, so item i comes out at position >= i - 7
    for position, item in enumerate(shuffled):
        assert position >= item - 7
    assert list(shuffle_records(iter(items), 1, np.random.default_rng(1))) == items

"""The analytical DPU model and the FPGA evaluator: monotonicity, limits and error cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import tuner.evaluators.fpga as fpga_evaluator
from tuner.config import TrialConfig
from tuner.costmodels.fpga import dpu_layers, host
from tuner.costmodels.fpga.devices import load_devices
from tuner.costmodels.fpga.dpu_layers import offchip_bytes, tiled_cycles
from tuner.costmodels.fpga.dpu_model import estimate
from tuner.costmodels.fpga.params import load_params
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import TunerError

DEVICES = load_devices()
PARAMS = load_params()


def conv(name: str, c_in: int, c_out: int, hw: int, k: int = 3, groups: int = 1) -> LayerCost:
    """A stride-1 'same' conv on an hw x hw map, with hand-computed costs."""
    depthwise = groups > 1 and groups == c_in
    return LayerCost(
        name=name, op_type="Conv", kind="depthwise" if depthwise else "conv",
        macs=c_out * hw * hw * (c_in // groups) * k * k,
        weight_bytes=c_out * (c_in // groups) * k * k, input_bytes=c_in * hw * hw,
        output_bytes=c_out * hw * hw, dpu_supported=True, c_in=c_in, c_out=c_out, h_out=hw,
        w_out=hw, kernel_h=k, kernel_w=k, groups=groups,
    )


def fc(name: str, k: int, n: int) -> LayerCost:
    return LayerCost(name, "Gemm", "gemm", k * n, k * n, k, n, True, c_in=k, c_out=n,
                     h_out=1, w_out=1, kernel_h=1, kernel_w=1)


SMALL_NET = [conv("c1", 64, 64, 56), conv("c2", 64, 128, 28), fc("fc", 512, 1000)]


def layer_time_us(layers: list[LayerCost], device: str, name: str) -> float:
    result = estimate(layers, DEVICES[device], 1, 1)
    return next(layer.time_us for layer in result.per_layer if layer.name == name)


def test_more_replicas_more_throughput_up_to_the_core_count() -> None:
    device = DEVICES["zcu102"]
    compute_bound = [conv("c1", 256, 256, 56)]
    rates = [estimate(compute_bound, device, 1, r).throughput_rps for r in (1, 2, 3)]
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] == pytest.approx(3 * rates[0], rel=0.01)
    with pytest.raises(TunerError, match=r"Got 4 for replicas.*zcu102 has 3"):
        estimate(SMALL_NET, device, 1, 4)
    with pytest.raises(TunerError, match="replicas"):
        estimate(SMALL_NET, device, 1, 0)


def test_larger_batch_raises_latency() -> None:
    latencies = [estimate(SMALL_NET, DEVICES["zcu104"], b, 1).latency_ms for b in (1, 2, 4, 8)]
    assert latencies == sorted(latencies) and len(set(latencies)) == 4
    with pytest.raises(TunerError, match="batch_size"):
        estimate(SMALL_NET, DEVICES["zcu104"], 0, 1)


def test_batch_engines_run_instances_side_by_side() -> None:
    u50 = DEVICES["u50"]  # 3 engines per core
    heavy = [conv("c1", 256, 256, 56), conv("c2", 256, 256, 56)]  # DPU time >> call overhead
    lat = {b: estimate(heavy, u50, b, 1).latency_ms for b in (1, 3, 4, 6)}
    assert lat[3] < 1.2 * lat[1]  # one pass: the 3 engines work in parallel
    assert lat[4] > 1.6 * lat[3]  # ceil(4 / 3) = 2 passes
    assert lat[6] == pytest.approx(lat[4], rel=0.05)  # still 2 passes
    rate = {b: estimate(heavy, u50, b, 1).throughput_rps for b in (1, 3)}
    assert rate[3] > 2.5 * rate[1]


def test_depthwise_conv_is_slower_per_mac_than_dense_conv() -> None:
    dense = conv("dense", 128, 128, 28)
    depthwise = conv("dw", 128, 128, 28, groups=128)
    layers = [dense, depthwise]
    us_per_mac = {
        n: layer_time_us(layers, "zcu104", n) / layer.macs for n, layer in
        (("dense", dense), ("dw", depthwise))
    }
    assert us_per_mac["dw"] > 8 * us_per_mac["dense"]


def test_channel_tiling_quantises_utilisation() -> None:
    # 17 output channels occupy two 16-wide OCP tiles: as slow as 32 channels.
    t17 = layer_time_us([conv("a", 64, 17, 56)], "zcu104", "a")
    t32 = layer_time_us([conv("a", 64, 32, 56)], "zcu104", "a")
    t16 = layer_time_us([conv("a", 64, 16, 56)], "zcu104", "a")
    assert t17 == pytest.approx(t32, rel=1e-6)
    assert t16 < 0.6 * t32
    # 3 input channels use 3 of 16 ICP lanes: far slower per MAC than 16 channels.
    stem = conv("s", 3, 64, 56)
    body = conv("b", 16, 64, 56)
    assert (layer_time_us([stem], "zcu104", "s") / stem.macs
            > 3 * layer_time_us([body], "zcu104", "b") / body.macs)


def test_big_fully_connected_layer_is_memory_bound() -> None:
    result = estimate([fc("fc", 4096, 4096)], DEVICES["zcu104"], 1, 1)
    (layer,) = result.per_layer
    assert layer.bound == "memory"
    own = PARAMS.for_device("zcu104")  # the board's own calibration
    bytes_per_us = DEVICES["zcu104"].memory_bandwidth_gbps * 1e9 * own.memory_efficiency / 1e6
    overhead_us = own.layer_overhead_cycles / 300
    expected_us = (4096 * 4096 + 4096 + 4096) / bytes_per_us + overhead_us
    assert layer.time_us == pytest.approx(expected_us, rel=1e-6)
    assert result.limited_by == "memory_bandwidth"


def test_busy_cores_share_the_off_chip_bandwidth() -> None:
    starved = dataclasses.replace(DEVICES["zcu102"], memory_bandwidth_gbps=0.5)
    one, three = (estimate([fc("fc", 2048, 2048)], starved, 1, r) for r in (1, 3))
    assert three.limited_by == "memory_bandwidth"
    assert three.throughput_rps < 1.2 * one.throughput_rps
    assert three.latency_ms > 2.5 * one.latency_ms  # each core gets a third of the bandwidth
    # A compute-bound model scales with the cores instead.
    heavy = [conv("c", 256, 256, 56)]
    rate1, rate3 = (estimate(heavy, DEVICES["zcu102"], 1, r).throughput_rps for r in (1, 3))
    assert rate3 == pytest.approx(3 * rate1, rel=0.02)


def test_unsupported_layer_runs_on_host_and_costs_time() -> None:
    softmax = LayerCost("softmax", "Softmax", "other", 0, 0, 1000, 1000, False)
    with_host = estimate([*SMALL_NET, softmax], DEVICES["u50"], 1, 1)
    without = estimate(SMALL_NET, DEVICES["u50"], 1, 1)
    assert with_host.host_layers == ("softmax",)
    assert with_host.per_layer[-1].bound == "host"
    assert with_host.latency_ms > without.latency_ms + PARAMS.host_layer_overhead_us / 1e3
    assert with_host.host_ms > without.host_ms


def test_pool_window_beyond_the_dpu_limit_runs_on_host() -> None:
    def gap(window: int) -> LayerCost:
        return LayerCost("gap", "GlobalAveragePool", "pool", 1000 * window * window, 0,
                         1000 * window * window, 1000, True, c_in=1000, c_out=1000, h_out=1,
                         w_out=1, kernel_h=window, kernel_w=window)

    u50, u200 = DEVICES["u50"], DEVICES["u200"]  # pooling windows up to 8 / 16 (PG367 / PG400)
    assert estimate([gap(7)], u50, 1, 1).host_layers == ()
    assert estimate([gap(14)], u50, 1, 1).host_layers == ("gap",)
    assert estimate([gap(14)], u200, 1, 1).host_layers == ()
    assert host.runs_on_host(gap(14), u50) and not host.runs_on_host(gap(14), u200)


def test_an_average_pool_that_leaves_padding_out_runs_on_host_where_the_dpu_counts_padding() -> None:
    def avg(pad_excluded: bool) -> LayerCost:  # a 3x3 stride-1 branch pool on 35 x 35 x 288
        return LayerCost("avg", "AveragePool", "pool", 288 * 35 * 35 * 9, 0, 288 * 35 * 35,
                         288 * 35 * 35, True, c_in=288, c_out=288, h_out=35, w_out=35,
                         kernel_h=3, kernel_w=3, pad_excluded=pad_excluded)

    u200, zcu102 = DEVICES["u200"], DEVICES["zcu102"]
    assert u200.avg_pool_counts_padding and not zcu102.avg_pool_counts_padding  # PG400 vs PG338
    assert estimate([avg(True)], u200, 4, 1).host_layers == ("avg",)
    assert estimate([avg(False)], u200, 4, 1).host_layers == ()
    assert estimate([avg(True)], zcu102, 1, 1).host_layers == ()
    slower = estimate([*SMALL_NET, avg(True)], u200, 4, 1)
    assert slower.host_ms > estimate([*SMALL_NET, avg(False)], u200, 4, 1).host_ms


def add(name: str, c: int, hw: int) -> LayerCost:
    """An element-wise add of two c x hw x hw maps."""
    return LayerCost(name, "Add", "eltwise", c * hw * hw, 0, 2 * c * hw * hw, c * hw * hw, True,
                     c_in=c, c_out=c, h_out=hw, w_out=hw)


def relu(name: str, c: int, hw: int) -> LayerCost:
    return LayerCost(name, "Relu", "eltwise", c * hw * hw, 0, c * hw * hw, c * hw * hw, True,
                     c_in=c, c_out=c, h_out=hw, w_out=hw)


# A ResNet-50 bottleneck at 56 x 56: its 256-channel add reads 1.6 MB and writes 0.8 MB, more than
# a PE's 2 MB of feature banks; cascaded, the last conv reads 0.2 + 0.8 MB and writes 0.8 MB.
BOTTLENECK = [conv("c1", 256, 64, 56, 1), relu("r1", 64, 56), conv("c2", 64, 64, 56),
              relu("r2", 64, 56), conv("c3", 64, 256, 56, 1), add("add", 256, 56), relu("r3", 256, 56)]


def test_an_add_fed_by_a_conv_runs_in_its_pass_where_the_eltwise_engine_is_cascaded() -> None:
    vck5000 = DEVICES["vck5000"]
    plain = dataclasses.replace(vck5000, conv_eltwise_cascade=0)
    assert dpu_layers.cascaded_adds(BOTTLENECK, vck5000) == {5: 4}
    assert dpu_layers.cascaded_adds(BOTTLENECK, plain) == {}
    assert dpu_layers.cascaded_adds(BOTTLENECK, DEVICES["vck190"]) == {}  # DPUCVDX8G: no cascade
    fused, alone = (estimate(BOTTLENECK, d, 8, 1) for d in (vck5000, plain))
    by_name = {lay.name: lay for lay in fused.per_layer}
    assert by_name["add"].time_us == 0.0  # timed inside c3's pass
    assert {lay.name: lay for lay in alone.per_layer}["add"].time_us > 0
    # c3 also reads the add's other operand and writes the add's output: 1.8 MB, within the banks
    assert by_name["c3"].offchip_bytes == BOTTLENECK[4].weight_bytes
    assert dpu_layers.with_cascade(BOTTLENECK[4], BOTTLENECK[5]).input_bytes == 64 * 56 * 56 + 256 * 56 * 56
    # the add no longer spills its maps to DDR in a pass of its own
    assert sum(lay.offchip_bytes for lay in fused.per_layer) < sum(lay.offchip_bytes for lay in alone.per_layer)


def test_only_an_add_right_after_a_conv_of_its_size_is_cascaded() -> None:
    vck5000 = DEVICES["vck5000"]
    after_pool = [conv("c", 64, 256, 56, 1),
                  LayerCost("p", "MaxPool", "pool", 256 * 56 * 56 * 9, 0, 256 * 56 * 56, 256 * 56 * 56, True,
                            c_in=256, c_out=256, h_out=56, w_out=56, kernel_h=3, kernel_w=3),
                  add("add", 256, 56)]
    assert dpu_layers.cascaded_adds(after_pool, vck5000) == {}  # the pool comes between
    other_size = [conv("c", 64, 128, 56, 1), add("add", 256, 56)]
    assert dpu_layers.cascaded_adds(other_size, vck5000) == {}
    host_between = [conv("c", 64, 256, 56, 1),
                    LayerCost("s", "Softmax", "other", 0, 0, 256 * 56 * 56, 256 * 56 * 56, False),
                    add("add", 256, 56)]
    assert dpu_layers.cascaded_adds(host_between, vck5000) == {}
    mul = [conv("c", 64, 256, 56, 1), dataclasses.replace(add("mul", 256, 56), op_type="Mul")]
    assert dpu_layers.cascaded_adds(mul, vck5000) == {}  # the cascade's elew_type is add only


def test_a_cascaded_add_costs_no_less_than_its_element_wise_stage() -> None:
    vck5000 = DEVICES["vck5000"]
    c3, the_add = BOTTLENECK[4], BOTTLENECK[5]
    conv_s = dpu_layers.layer_seconds(c3, vck5000, 0.5)
    assert dpu_layers.layer_seconds(c3, vck5000, 0.5, the_add) == conv_s  # 64 x 8 lanes keep pace
    slow_stage = dataclasses.replace(vck5000, conv_eltwise_cascade=1)  # 64 x 1 lanes: the add's stage binds
    stage_s = the_add.macs / 64 / (vck5000.control_clock_mhz * 1e6)
    assert stage_s > conv_s
    assert dpu_layers.layer_seconds(c3, slow_stage, 0.5, the_add) == pytest.approx(stage_s)


def test_host_work_overlaps_the_dpu_in_throughput_but_not_in_latency() -> None:
    device = DEVICES["zcu104"]
    # Explicit host overheads: the shipped (fitted) one may itself exceed this small net's DPU time.
    fast_host = PARAMS.replace(host_call_overhead_ms={"shared_ddr": 0.01, "pcie": 0.01})
    slow_host = PARAMS.replace(host_call_overhead_ms={"shared_ddr": 50.0, "pcie": 50.0})
    base, host_bound = (estimate(SMALL_NET, device, 1, 1, p) for p in (fast_host, slow_host))
    assert host_bound.latency_ms == pytest.approx(base.latency_ms + 50 - 0.01)
    assert host_bound.limited_by == "host_cpu"
    assert host_bound.throughput_rps == pytest.approx(1e3 / host_bound.host_ms)
    assert base.throughput_rps == pytest.approx(1e3 / base.dpu_ms)  # the DPU is the slower stage


def test_pcie_cards_pay_for_input_transfer() -> None:
    layers = [dataclasses.replace(conv("c", 3, 64, 224), graph_input_bytes=3 * 224 * 224)]
    card = DEVICES["u200"]
    board = dataclasses.replace(card, host_link="shared_ddr")
    same_host = PARAMS.replace(host_call_overhead_ms={"shared_ddr": 0.4, "pcie": 0.4})
    extra_ms = (estimate(layers, card, 4, 1, same_host).latency_ms
                - estimate(layers, board, 4, 1, same_host).latency_ms)
    transfer_ms = 4 * 3 * 224 * 224 / (PARAMS.pcie_gbps * 1e9) * 1e3
    assert extra_ms > transfer_ms


def test_a_call_is_the_sum_of_its_layer_passes_and_host_parts() -> None:
    """estimate() composes dpu_layers (one layer's pass) and host (the CPU side) and adds nothing else."""
    softmax = LayerCost("softmax", "Softmax", "other", 0, 0, 1000, 1000, False)
    pool = LayerCost("p", "MaxPool", "pool", 64 * 28 * 28 * 4, 0, 64 * 56 * 56, 64 * 28 * 28, True,
                     c_in=64, c_out=64, h_out=28, w_out=28, kernel_h=2, kernel_w=2)
    layers = [*SMALL_NET, pool, softmax]
    for key, batch in (("zcu104", 1), ("u50", 5)):
        device, params = DEVICES[key], PARAMS.for_device(key)
        engines = max(device.batch_engines)
        passes = [engines] * (batch // engines) + ([batch % engines] if batch % engines else [])
        bandwidth = device.memory_bandwidth_gbps * 1e9 * params.memory_efficiency
        conv_s = misc_s = 0.0
        for layer in layers:
            if host.runs_on_host(layer, device):
                continue
            seconds = sum(dpu_layers.dpu_pass(layer, device, n, bandwidth, params)[0] for n in passes)
            if layer.kind in dpu_layers.CONV_KINDS:
                conv_s += seconds
            else:
                misc_s += seconds
        dpu_s = params.call_overhead_us / 1e6 + dpu_layers.overlapped(conv_s, misc_s, params.misc_overlap)
        host_s = host.host_call_fixed_s(layers, device, batch, params) + host.host_time_s(
            softmax, device, batch, params)
        result = estimate(layers, device, batch, 1)
        assert misc_s > 0 and result.host_layers == ("softmax",)
        assert result.dpu_ms == pytest.approx(dpu_s * 1e3, rel=1e-12)
        assert result.host_ms == pytest.approx(host_s * 1e3, rel=1e-12)


def test_only_a_pcie_card_caps_throughput_at_its_link() -> None:
    layers = [dataclasses.replace(conv("c", 3, 64, 224), graph_input_bytes=3 * 224 * 224),
              LayerCost("softmax", "Softmax", "other", 0, 0, 1000, 1000, False)]
    assert host.pcie_cap_rps(layers, DEVICES["zcu104"], PARAMS) == float("inf")
    moved = 3 * 224 * 224 + 2 * 1000  # the graph input, and the host layer's data both ways
    assert host.link_bytes(layers[1], DEVICES["u50"]) == 2 * 1000
    assert host.pcie_cap_rps(layers, DEVICES["u50"], PARAMS) == pytest.approx(PARAMS.pcie_gbps * 1e9 / moved)


def test_tiled_cycles_of_conv_depthwise_and_fc() -> None:
    zcu = DEVICES["zcu104"]  # PP 8, ICP 16, OCP 16
    dense = conv("c", 20, 40, 14)  # ceil(20/16)=2, ceil(40/16)=3, 14 rows, ceil(14/8)=2, 3x3
    cycles, util = tiled_cycles(dense, zcu, 0.5)
    assert cycles == 2 * 3 * 14 * 2 * 9
    assert util == pytest.approx(dense.macs / (cycles * 8 * 16 * 16))
    dw = conv("d", 64, 64, 28, groups=64)  # 4 channel tiles, 28 rows, ceil(28/4)=7, 3x3
    cycles, util = tiled_cycles(dw, zcu, 0.5)
    assert cycles == 4 * 28 * 7 * 9 and util == pytest.approx(1.0)
    cycles, _ = tiled_cycles(fc("f", 512, 1000), zcu, 0.5)
    assert cycles == 32 * 63  # one row: 1 of 8 pixel lanes busy


def test_channel_augmentation_folds_kernel_columns_of_a_thin_first_layer() -> None:
    stem = conv("stem", 3, 64, 112, k=7)  # 3 of 16 ICP lanes without augmentation
    plain = dataclasses.replace(DEVICES["zcu104"], channel_augmentation=0)
    assert tiled_cycles(stem, plain, 0.5)[0] == 1 * 4 * 112 * 14 * 7 * 7
    # channel_num 32: all 7 columns fold into 21 channels (2 ICP tiles), kernel width 1
    assert tiled_cycles(stem, DEVICES["zcu104"], 0.5)[0] == 2 * 4 * 112 * 14 * 7 * 1
    # DPUCADF8H channel_num 16: 5 columns fold into 15 channels, kernel width ceil(7/5) = 2
    assert tiled_cycles(stem, DEVICES["u200"], 0.5)[0] == 1 * 4 * 112 * 14 * 7 * 2
    wide = conv("c", 64, 64, 56)  # enough input channels: unchanged
    assert tiled_cycles(wide, DEVICES["zcu104"], 0.5) == tiled_cycles(wide, plain, 0.5)


def test_off_chip_bytes_reread_only_when_nothing_fits() -> None:
    layer = conv("c", 256, 256, 56)  # 802 KB in and out, 590 KB weights
    assert offchip_bytes(layer, 1, 4e6, 0.5) == layer.input_bytes + layer.output_bytes + layer.weight_bytes
    assert offchip_bytes(layer, 3, 4e6, 0.5) == 3 * (layer.input_bytes + layer.output_bytes) + layer.weight_bytes
    small = offchip_bytes(layer, 1, 512 * 1024, 0.5)  # neither fits 256 KB: re-reads
    tiles_in, tiles_w = -(-layer.input_bytes // (256 * 1024)), -(-layer.weight_bytes // (256 * 1024))
    extra = min((tiles_in - 1) * layer.weight_bytes, (tiles_w - 1) * layer.input_bytes)
    assert small == layer.input_bytes + layer.output_bytes + layer.weight_bytes + extra > 0


def test_clock_scales_dpu_time() -> None:
    heavy = [conv("c", 256, 256, 56), conv("c2", 256, 256, 56)]
    fast = estimate(heavy, DEVICES["u50"], 1, 1)
    slow = estimate(heavy, dataclasses.replace(DEVICES["u50"], clock_mhz=150), 1, 1)
    assert slow.dpu_ms == pytest.approx(2 * (fast.dpu_ms - PARAMS.call_overhead_us / 1e3)
                                        + PARAMS.call_overhead_us / 1e3, rel=0.02)


def test_estimate_reports_gops_power_and_is_deterministic() -> None:
    first = estimate(SMALL_NET, DEVICES["u50"], 2, 2)
    assert first == estimate(SMALL_NET, DEVICES["u50"], 2, 2)
    assert first.total_gops_per_instance == pytest.approx(
        2 * sum(layer.macs for layer in SMALL_NET) / 1e9
    )
    assert first.power_w == 75
    assert estimate(SMALL_NET, DEVICES["zcu104"], 1, 1).power_w is None


# --- the evaluator ----------------------------------------------------------------------------


def _conv_model_bytes(extra_softmax: bool = False) -> bytes:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"])]
    nodes.append(helper.make_node("Softmax" if extra_softmax else "Identity", ["f"], ["y"]))
    weight = np.ones((32, 16, 3, 3), np.float32)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


SHAPES = {"x": [1, 16, 32, 32]}


def _config(**overrides) -> TrialConfig:
    base = {"platform": "fpga", "batch_size": 2, "precision": "int8", "replicas": 2,
            "device": "zcu104"}
    return TrialConfig(**{**base, **overrides})


def test_evaluator_returns_an_estimate_with_details() -> None:
    result = fpga_evaluator.evaluate_fpga(
        _conv_model_bytes(extra_softmax=True), SHAPES, _config(), DEVICES["zcu104"]
    )
    assert result.estimated is True
    assert result.latency_p50_ms == result.latency_p95_ms == result.latency_p99_ms > 0
    assert result.throughput_rps > 0
    details = result.details
    assert details["device"] == "zcu104" and details["clock_mhz"] == 300
    assert details["dpu"].startswith("DPUCZDX8G")
    assert details["gops_per_instance"] == pytest.approx(2 * 32 * 32 * 32 * 16 * 9 / 1e9, rel=1e-3)
    assert details["host_layers"] == ["Softmax_2"]
    assert 1 <= len(details["top_layers"]) <= fpga_evaluator.TOP_LAYERS


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"precision": "fp16"}, "precision"), ({"platform": "cpu"}, "platform"),
     ({"device": "u50"}, "device")],
)
def test_evaluator_rejects_configs_a_dpu_cannot_run(overrides: dict, field: str) -> None:
    with pytest.raises(TunerError, match=rf"Got '[a-z0-9]+' for {field}\."):
        fpga_evaluator.evaluate_fpga(
            _conv_model_bytes(), SHAPES, _config(**overrides), DEVICES["zcu104"]
        )


def test_evaluator_rejects_bytes_that_are_not_onnx() -> None:
    with pytest.raises(TunerError, match="model_bytes"):
        fpga_evaluator.evaluate_fpga(b"not a model", SHAPES, _config(), DEVICES["zcu104"])


def test_evaluator_analyses_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = fpga_evaluator.analyze_graph
    monkeypatch.setattr(fpga_evaluator, "analyze_graph",
                        lambda *args: calls.append(1) or real(*args))
    monkeypatch.setattr(fpga_evaluator, "_ANALYSES", {})
    model = _conv_model_bytes()
    for batch in (1, 2, 4):
        fpga_evaluator.evaluate_fpga(model, SHAPES, _config(batch_size=batch), DEVICES["zcu104"])
    assert len(calls) == 1
    fpga_evaluator.evaluate_fpga(
        _conv_model_bytes(extra_softmax=True), SHAPES, _config(), DEVICES["zcu104"]
    )
    assert len(calls) == 2

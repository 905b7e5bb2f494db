from strategist import contract
from strategist.cli import build_parser


def test_shapes_follow_the_contract():
    assert contract.INPUT_SHAPES[contract.INPUT_TELEMETRY] == (5, 100, 5)
    assert contract.INPUT_SHAPES[contract.INPUT_TACTICAL] == (2, 2)
    assert len(contract.LAP_SLOTS) == contract.N_LAP_CONTEXT
    assert contract.DISCRETE_CHANNELS <= set(contract.CHANNELS)


def test_cli_builds_and_lists_help(capsys):
    parser = build_parser()
    assert parser.prog == "strategist"

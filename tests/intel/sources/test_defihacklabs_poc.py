"""PoC header comments and fork targets, against the bundled CSV's facts for the same files."""

from pathlib import Path

import pytest

from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources import defihacklabs
from kamiyo.intel.sources.defihacklabs_poc import explorer_chain, parse_poc, role_of
from kamiyo.intel.vocabulary import AddressRole

HEADERS = Path(__file__).parents[2] / "fixtures" / "sources" / "defihacklabs" / "poc_headers"
DATA = Path(__file__).parents[3] / "data" / "defihacklabs"
# The fixture header each bundled incident's PoC starts with.
INCIDENT_OF = {
    "Bizness_exp": "20241227_bizness",
    "Moonhacker_exp": "20241223_moonhacker",
    "BankrollNetwork_exp": "20250619_bankrollnetwork",
    "AAVEBoost_exp": "20250612_aaveboost",
    "FlashstakeV2_exp": "20260820_flashstakev2",
}
# Addresses the header gives that the CSV's extraction missed: the numbered attack contracts
# and the 2026 header's "Caller EOA" (the attack transaction's sender).
NOT_IN_CSV = {
    "Moonhacker_exp": {
        (AddressRole.ATTACK_CONTRACT, "0x4e258f1705822c2565d54ec8795d303fdf9f768e"),
        (AddressRole.ATTACK_CONTRACT, "0x3a6eaaf2b1b02ceb2da4a768cfeda86cff89b287"),
    },
    "FlashstakeV2_exp": {(AddressRole.ATTACKER, "0xa521f8c249eb055796b765642eed78c01cd620d1")},
}


@pytest.fixture(scope="module")
def bundled() -> dict[str, SourceReport]:
    return {r.source_id: r for r in defihacklabs.read_reports(DATA)}


@pytest.mark.parametrize("name", sorted(INCIDENT_OF))
def test_header_gives_the_bundled_facts(name: str, bundled: dict[str, SourceReport]) -> None:
    facts = parse_poc((HEADERS / f"{name}.header.txt").read_text("utf-8"))
    report = bundled[INCIDENT_OF[name]]
    got = {(a.role, a.address) for a in facts.addresses}
    assert got - {(a.role, a.address) for a in report.addresses} == NOT_IN_CSV.get(name, set())
    assert {(a.role, a.address) for a in report.addresses} <= got
    assert [t.hash for t in facts.transactions] == [t.hash for t in report.transactions]
    # The header's explorers say the chain; the free-form header links none.
    assert facts.chains == (report.chains if name != "FlashstakeV2_exp" else [])
    # An address with an explorer link is on that explorer's chain (the others on the fork's).
    assert all(a.chain in [None, *report.chains] for a in facts.addresses)
    assert set(facts.references) <= set(report.references)


def test_classic_header_fields() -> None:
    facts = parse_poc((HEADERS / "Bizness_exp.header.txt").read_text("utf-8"))
    assert facts.loss_text == "15.7k USD"
    assert [(a.role, a.label, a.chain) for a in facts.addresses] == [
        (AddressRole.ATTACKER, "Attacker", "base"),
        (AddressRole.ATTACK_CONTRACT, "Attack Contract", "base"),
        (AddressRole.VULNERABLE_CONTRACT, "Vulnerable Contract", "base"),
    ]
    # The explorer pages are the facts above; "Post-mortem : N/A" is no link.
    assert facts.references == ["https://x.com/TenArmorAlert/status/1872857132363645205"]


def test_empty_fields_bare_addresses_and_blocksec_urls() -> None:
    facts = parse_poc((HEADERS / "AAVEBoost_exp.header.txt").read_text("utf-8"))
    assert facts.loss_text == "14.8K USD"
    assert [(a.role, a.address, a.chain) for a in facts.addresses] == [
        (AddressRole.ATTACKER, "0x5d4430d14ae1d11526ddac1c1ef01da3b1dae455", None),
        (AddressRole.ATTACK_CONTRACT, "0x8fa5cf0aa8af0e5adc7b43746ea033ca1b8e68de", "ethereum"),
    ]
    (tx,) = facts.transactions
    assert tx.chain == "ethereum"  # app.blocksec.com/explorer/tx/eth/…
    assert facts.chains == ["ethereum"]


def test_free_form_2026_header() -> None:
    facts = parse_poc((HEADERS / "FlashstakeV2_exp.header.txt").read_text("utf-8"))
    assert facts.loss_text is None
    assert [(t.hash, t.chain) for t in facts.transactions] == [
        ("0xe3a7bd727174526096ebb51672cd3f801fc03ff984d351673373df6b0c166393", None)
    ]
    # The "protocol addresses touched" list names tokens and pools, no party to the attack.
    assert [(a.role, a.label) for a in facts.addresses] == [
        (AddressRole.ATTACKER, "Caller EOA"),
        (AddressRole.ATTACK_CONTRACT, "Attack ctrt"),
        (AddressRole.VICTIM, "Victim pool"),
    ]


@pytest.mark.parametrize(
    ("label", "role"),
    [
        ("Attacker", AddressRole.ATTACKER),
        ("Attacker EOA", AddressRole.ATTACKER),
        ("Caller EOA", AddressRole.ATTACKER),
        ("Attack Deployer", AddressRole.ATTACKER),
        ("exploiter", AddressRole.ATTACKER),
        ("Attack Contract2", AddressRole.ATTACK_CONTRACT),
        ("Attack ctrt", AddressRole.ATTACK_CONTRACT),
        ("Created Attack Contract", AddressRole.ATTACK_CONTRACT),
        ("ROOT_ATTACK_CONTRACT", AddressRole.ATTACK_CONTRACT),
        ("attackerContract", AddressRole.ATTACK_CONTRACT),
        ("Vulnerable Contract Code", AddressRole.VULNERABLE_CONTRACT),
        ("Vuln Contract", AddressRole.VULNERABLE_CONTRACT),
        ("Victim pool", AddressRole.VICTIM),
        ("VICTIM_LP", AddressRole.VICTIM),
        ("Frontrunner", AddressRole.FRONTRUNNER),
        ("Attack Tx", None),
        ("Attacker Transaction", None),
        ("Uni V2 pair", None),
        ("Post-mortem", None),
    ],
)
def test_roles_of_labels(label: str, role: AddressRole | None) -> None:
    assert role_of(label) is role


@pytest.mark.parametrize(
    ("url", "chain"),
    [
        ("https://bscscan.com/tx/0x1", "bsc"),
        ("https://www.bscscan.com/address/0x1", "bsc"),
        ("https://basescan.org/address/0x1", "base"),
        ("https://optimistic.etherscan.io/address/0x1", "optimism"),
        ("https://etherscan.io/address/0x1", "ethereum"),
        ("https://arbiscan.io/tx/0x1", "arbitrum"),
        ("https://app.blocksec.com/explorer/tx/eth/0x1", "ethereum"),
        ("https://explorer.phalcon.xyz/tx/bsc/0x1", "bsc"),
        ("https://x.com/peckshield/status/1", None),
    ],
)
def test_explorer_chains(url: str, chain: str | None) -> None:
    assert explorer_chain(url) == chain


@pytest.mark.parametrize(
    ("code", "chains"),
    [
        ('        vm.createSelectFork("mainnet", 14_090_169);', ["ethereum"]),
        ('        cheats.createSelectFork("bsc", 42_538_916 - 1);', ["bsc"]),
        ('    vm.createSelectFork("https://api.zan.top/bsc-mainnet", BLOCK - 1);', ["bsc"]),
        (
            '    string constant ARBITRUM_ARCHIVE = "https://arbitrum.gateway.tenderly.co";\n'
            "    function setUp() public { vm.createSelectFork(ARBITRUM_ARCHIVE, BLOCK); }",
            ["arbitrum"],
        ),
        ('        vm.createSelectFork(vm.envString("ETH_RPC_URL"), FORK_BLOCK);', ["ethereum"]),
        ('        vm.createFork("optimism", 1); // was "base"', ["optimism"]),
        ('        // cheats.createSelectFork("bsc", 14742311);', []),
        ("        vm.createSelectFork(_chain, _block);", []),
    ],
)
def test_fork_targets(code: str, chains: list[str]) -> None:
    assert parse_poc(code).fork_chains == chains


def test_a_fork_beats_the_explorers_and_explorers_set_address_chains() -> None:
    text = (HEADERS / "BankrollNetwork_exp.header.txt").read_text("utf-8")
    facts = parse_poc(
        text + '\ncontract T { function setUp() public { vm.createSelectFork("base", 1); } }'
    )
    assert facts.chains == ["base"]
    assert {a.chain for a in facts.addresses} == {"bsc"}


def test_lists_under_a_label_and_block_comments() -> None:
    text = (
        "// @KeyInfo -- Total Lost : 819 BNB (~224K US$)\n"
        "// Attack Contract :\n"
        "//  0x1fae46b350c4a5f5c397dbf25ad042d3b9a5cb07\n"
        "//  - https://bscscan.com/address/0x6066435edce9c2772f3f1184b33fc5f7826d03e7\n"
        "// Attack Txs :\n"
        "//  0x6759db55a4edec4f6bedb5691fc42cf024be3a1a534ddcc7edd471ef205d4047 (profit)\n"
        "// Root cause : Business Logic Flaw\n"
        "//  0x449fea37d339a11efe1b181e5d5462464bba3752 is not an attacker\n"
        "/*\n"
        " * Tx 1 : https://bscscan.com/tx/0x88fcffc3256faac76cde4bbd0df6ea3603b1438a5a0409b2e2b91e7c2ba3371a\n"
        " */\n"
        "contract T {\n"
        "    address constant VICTIM = 0xAdEfb902CaB716B8043c5231ae9A50b8b4eE7c4e;\n"
        "    address constant attacker = 0x1FAE46B350C4A5F5C397DBF25AD042D3B9A5CB07;\n"
        "}\n"
    )
    facts = parse_poc(text)
    assert facts.loss_text == "819 BNB (~224K US$)"
    assert [(a.role, a.address) for a in facts.addresses] == [
        (AddressRole.ATTACK_CONTRACT, "0x1fae46b350c4a5f5c397dbf25ad042d3b9a5cb07"),
        (AddressRole.ATTACK_CONTRACT, "0x6066435edce9c2772f3f1184b33fc5f7826d03e7"),
        # A constant adds what the header does not give, never a second role for one it does.
        (AddressRole.VICTIM, "0xadefb902cab716b8043c5231ae9a50b8b4ee7c4e"),
    ]
    assert [t.hash[:10] for t in facts.transactions] == ["0x6759db55", "0x88fcffc3"]


def test_references_leave_out_explorer_pages_and_rpc_endpoints() -> None:
    trace = "https://dashboard.tenderly.co/tx/bsc/0x" + "ab" * 32
    text = (
        "// @KeyInfo - Total Lost : ~$1.6M(https://debank.com/profile/0x0cfc28d16d07219249c6d6d6ae24e7132ee4caa7)\n"
        "// Attack Txs : https://bscscan.com/txs?a=0xab74fbd735cd2ed826b64e0f850a890930a91094\n"
        "// @Analysis\n"
        "// Post-mortem : https://x.com/peckshield/status/1\n"
        f"// Trace : {trace}\n"
        "//     --rpc-url https://1rpc.io/eth\n"
        '// cheats.createSelectFork("https://rpc.ankr.com/bsc", 1);\n'
    )
    assert parse_poc(text).references == [
        "https://debank.com/profile/0x0cfc28d16d07219249c6d6d6ae24e7132ee4caa7",
        "https://x.com/peckshield/status/1",
        trace,
    ]

"""Writes resolution_pairs.csv: labelled pairs of real reports for measuring entity resolution.

Run from the repository root: ``.venv/bin/python tests/intel/data/build_pairs.py``. The output is
the same on every run. Every label below was decided by reading the facts of both reports
(dates, losses, chains, attack transactions, attacker and victim addresses, PoC headers); this
script only writes them down and states the evidence. Generated pairs (the nearest-dated rows,
same-day rows, random pairs) are checked for shared transactions and attackers, which would need
a person's look, and the run stops if it finds one.
"""

import csv
import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from kamiyo.intel.names import name_key
from kamiyo.intel.sources.notable import read_reports

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
SEED = 20261201
DHL, NOT = "defihacklabs", "notable"


@dataclass(frozen=True)
class Report:
    source: str
    id: str
    name: str
    date: dt.date
    loss: str
    chains: tuple[str, ...]
    keys: frozenset[str]  # name keys of the name and aliases
    txs: frozenset[str]
    attackers: frozenset[str]
    month_only: bool = False  # three DeFiHackLabs PoCs give only the month of their folder

    def __str__(self) -> str:
        chains = "/".join(self.chains) or "chain not named"
        day = self.date.isoformat()[:7] if self.month_only else self.date.isoformat()
        return f"{self.name} {day} ({self.loss}, {chains})"


def _money(value: float | None, text: str = "") -> str:
    if value is None:
        return text.split("(")[0].strip()[:24] or "no loss given"
    if value >= 1e9:
        return f"${value / 1e9:.3g}B"
    return f"${value / 1e6:.3g}M" if value >= 1e6 else f"${value / 1e3:.3g}K"


def _defihacklabs() -> dict[str, Report]:
    folder = REPO / "data" / "defihacklabs"
    attackers: defaultdict[str, set[str]] = defaultdict(set)
    with (folder / "defihacklabs_addresses.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["role"] in ("attacker", "attack_contract"):
                attackers[row["incident_id"]].add(row["address"].lower())
    reports = {}
    with (folder / "defihacklabs_incidents.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            txs = set(row["attack_txs"].lower().split())
            txs |= {
                u.rsplit("/", 1)[-1].split("?")[0].lower()
                for u in row["reference_urls"].split()
                if "/tx/" in u
            }
            day = row["date"] if len(row["date"]) == 10 else row["date"] + "-01"
            loss = float(row["loss_usd"]) if row["loss_usd"] else None
            reports[row["incident_id"]] = Report(
                DHL, row["incident_id"], row["protocol"], dt.date.fromisoformat(day),
                _money(loss, row["loss_text"]), tuple(row["chains"].split()),
                frozenset({name_key(row["protocol"])}), frozenset(txs),
                frozenset(attackers[row["incident_id"]]), len(row["date"]) == 7,
            )  # fmt: skip
    return reports


def _notable() -> dict[str, Report]:
    return {
        r.source_id: Report(
            NOT,
            r.source_id,
            r.protocol,
            r.date,
            _money(r.loss_usd),
            tuple(r.chains),
            frozenset(name_key(n) for n in [r.protocol, *r.aliases]),
            frozenset(t.hash.lower() for t in r.transactions),
            frozenset(a.address.lower() for a in r.addresses),
        )
        for r in read_reports(REPO / "data" / "notable" / "notable_incidents.csv")
    }


D, N = _defihacklabs(), _notable()


def _get(ref: str) -> Report:
    source, _, ident = ref.partition(":")
    return (D if source == "d" else N)[ident]


def _shared(a: Report, b: Report) -> str:
    parts = [f"shared attack tx {t[:10]}…" for t in sorted(a.txs & b.txs)[:1]]
    parts += [f"shared attacker {x[:10]}…" for x in sorted(a.attackers & b.attackers)[:1]]
    return ", ".join(parts)


def _gap(a: Report, b: Report) -> str:
    if a.month_only or b.month_only:
        return "in the same month" if a.date.month == b.date.month else "months apart"
    days = abs((a.date - b.date).days)
    return "the same day" if days == 0 else f"{days} day{'s' * (days > 1)} apart"


def _same_reason(a: Report, b: Report) -> str:
    evidence = _shared(a, b)
    return (f"Same incident: {a} and {b}, {_gap(a, b)}" + (f"; {evidence}" if evidence else "")
            + ".")  # fmt: skip


def _different_reason(a: Report, b: Report, why: str) -> str:
    return f"{why}: {a} vs {b}, {_gap(a, b)}; no shared attack tx or attacker address."


# --- labels decided by hand --------------------------------------------------------------------
# "d:" is a DeFiHackLabs incident_id, "n:" a notable incident_key.

DUPLICATES = {  # one incident listed twice inside DeFiHackLabs
    ("d:20240112_wiselending", "d:202401_wiselending03"): "The README entry (2024-01-12) and the "
    "unlisted WiseLending03 PoC (month 2024-01) share attack tx 0x04e16a79…, attacker 0xb90cf1d7…, "
    "attack contract 0x91c49cc7… and the ~$464K loss.",
    ("d:20260526_skp-token", "d:20260526_skp-token_2"): "Both 2026-05-26 BSC entries share attack "
    "tx 0xbc01ea37… and attacker 0x83b9e7ed…, with ~$212K lost in each.",
    ("d:20260615_thetanuts", "d:202606_thetanutsfi"): "Both share attack tx 0xbba9f138…, attacker "
    "0x30498e44… and vulnerable contract 0xc2c3ae0a… in June 2026; $105K is what the attacker "
    "kept, ~$2.1M what was at risk before a whitehat rescue.",
    ("d:20221116_sheepfarm", "d:202211_sheepfarm2"): "SheepFarm2's PoC attacks the same SheepFarm "
    "contract 0x4726010d… with the same referral address, forks BSC about 1,000 blocks after "
    "SheepFarm's and cites the same BlockSec analysis: a second transaction of one exploit.",
    ("d:20251004_abracadabra", "d:20251004_mimspell3"): "Abracadabra and its MIM Spell market, "
    "both 2025-10-04 on Ethereum, $1.8M vs $1.7M, an insolvency check bypassed; the Abracadabra "
    "entry has no PoC or tx that could tell them apart.",
}
REASONS = {  # cross-source pairs whose names or figures need saying
    ("n:20220605_wintermute-op", "d:20220608_optimism"): "Wintermute's 20M OP on Optimism, "
    "sent to a multisig address not yet deployed there: exploited 2022-06-05, listed by "
    "DeFiHackLabs on 2022-06-08 under the chain's name, with 'Wintermute' as its root cause and "
    "'20 million OP, 17 million returned' as its loss.",
    ("n:20240323_curio", "d:20240323_cgt"): "Curio's governance token CGT on Ethereum, 2024-03-23 "
    "in both; DeFiHackLabs names the token and gives no USD loss ($16M in the notable row).",
    ("n:20171106_parity-library-freeze", "d:20171106_parity"): "The Parity multisig library "
    "self-destruct of 2017-11-06 on Ethereum ('Accidentally Killed It'); the notable row gives the "
    "$155M frozen, DeFiHackLabs no USD figure.",
    ("n:20221223_defrost", "d:20221223_defrost"): "Defrost Finance on Avalanche, 2022-12-23 in "
    "both; DeFiHackLabs records only the V2 reentrancy (~$170K) of the $12M total.",
    ("n:20210305_paid-network", "d:20210305_paid-network"): "PAID Network on Ethereum, "
    "2021-03-05 in both; $27.4M is the value of the PAID minted, $3M what the attacker realised.",
    ("n:20220323_ronin", "d:20220329_ronin-network"): "Ronin Network: drained 2022-03-23, "
    "disclosed 2022-03-29 (DeFiHackLabs' date); $625M vs $624M.",
    ("n:20240716_lifi", "d:20240716_lifiprotocol"): "LI.FI on 2024-07-16 in both, $9.73M vs $10M; "
    "the notable row lists the DeFiLlama chains (zkSync, Linea, Metis), DeFiHackLabs Ethereum.",
}
NOT_A_PAIR = {  # the notable table's pairing that the facts contradict
    ("n:20210507_value-defi-vswap", "d:20210508_value-defi"): "Different Value DeFi incidents: "
    "vSwap's Bancor-formula drain on 2021-05-07 (tx 0x2fd0aaf0…, $11M) vs the 2021-05-08 vSafe "
    "attack by the Rari Capital attacker 0xcb36b1ee… (tx 0xa00def91…, in Rari's post-mortem).",
}
DIFFERENT = {  # hard negatives whose evidence is not the generated kind
    ("d:20260110_futureswap", "d:20260112_mttoken"): "MTToken (BSC, 2026-01-12, $37K, attacker "
    "0xe918a178…) lists FutureSwap's Arbitrum tx 0xe1e6aa53… by copy error; FutureSwap "
    "(2026-01-10, $433K) has attacker 0xbf6ec059….",
    (
        "d:20231207_hnet",
        "d:20231228_dominott",
    ): "HNet's PoC header copies DominoTT's tx 0x1ee617cd… "
    "and addresses, but HNet's own reference is tx 0x67af906c…; different tokens three weeks "
    "apart (~2.4 vs ~5 WBNB).",
    (
        "d:20231216_nfttrader",
        "d:20231222_pineprotocol",
    ): "Pine Protocol's header reuses NFTTrader's "
    "tx 0xec752366…; Pine's attacker 0x05324c97… and lending pools differ from NFTTrader's "
    "attacker 0xb1edf2a0…, and $90K vs $3M.",
    ("d:20210508_value-defi", "d:20210509_raricapital"): "One attacker (0xcb36b1ee…), two victims: "
    "Value DeFi's vSafe on BSC (2021-05-08) and Rari Capital's ETH pool on Ethereum (2021-05-09).",
    ("n:20210508_rari-capital-eth-pool", "d:20210508_value-defi"): "Same attacker 0xcb36b1ee… but "
    "different victims and chains: Rari Capital's ETH pool on Ethereum vs Value DeFi's vSafe on "
    "BSC.",
    ("n:20210505_value-defi-vbswap-pool", "d:20210508_value-defi"): "Different Value DeFi "
    "incidents: the vBSWAP pool re-initialised on 2021-05-05 (tx 0xd3382252…, $10M) vs the vSafe "
    "attack of 2021-05-08 (tx 0xa00def91…).",
    ("d:20250618_bankrollstackplus", "d:20250619_bankrollstack"): "One attacker (0x172dca3e…) and "
    "attack contract, two deployments: Ethereum contract 0x7b3611b0… ($12.2K) vs BSC contract "
    "0x16d0a151… ($5K), different txs.",
    (
        "d:20230721_conic-finance",
        "d:20230722_conic-finance-02",
    ): "Two Conic exploits covered by one "
    "post-mortem: the ETH Omnipool read-only reentrancy ($3.25M, attacker 0x8d67db0b…) and the "
    "crvUSD Omnipool attack the next day ($934K, attacker 0xb6369f59…).",
    ("d:20210702_chainswap", "d:20210710_chainswap"): "ChainSwap was hit twice: 2021-07-02 on "
    "Ethereum ($0.8M, exploiter 0x941a9e3b…) and 2021-07-10 on BSC ($4.4M, exploiter 0xeda50667…).",
    ("d:20210915_nimbus-platform", "d:20210915_nowswap-platform"): "Two platforms on one day cited "
    "by the same BlockSec thread: Nimbus (1.45 ETH) and NowSwap (158 WETH and 536K USDT).",
    ("d:20230905_jumpfarm", "d:20230905_quantumwn"): "One attacker (0x6ce9fa08…) hit two rebasing "
    "tokens on 2023-09-05 in separate txs: JumpFarm (~2.4 ETH) and QuantumWN (~0.5 ETH).",
    ("d:20260625_lixirpermitdrain", "d:20260625_oceanbpoolsidestaking"): "One attacker "
    "(0x3fa8cf7f…), two victims on one day: Lixir on Ethereum (signature bug) and Ocean's BPool on "
    "Polygon (join/exit maths), different txs.",
    ("d:20250427_aventarewardclaim", "d:20250427_multitransferswap"): "One attacker (0x7c982e93…), "
    "two victims on 2025-04-27 with different contracts and txs (16M AVENTA vs 0.34 ETH).",
    ("d:20260617_whale", "d:20260629_vault4626"): "One attacker (0xa27eae74…), two victims twelve "
    "days apart: WHALE on BSC ($3.5K) and Vault4626 on Base (13.5 WETH).",
    ("d:20250307_stackmarket", "d:20250307_uni"): "One attacker (0x97d8170e…), two victims on "
    "2025-03-07: StackMarket on Base and UNI on Ethereum, different txs.",
    ("d:20260421_kipselipropamm", "d:20260518_tesseraswap"): "One attacker (0x2352a1fc…) and "
    "attack contract (0x74513519…), two victims a month apart: KipseliPropAMM (2026-04-21) and "
    "TesseraSwap (2026-05-18).",
    ("d:20240127_citadelfinance", "d:20240205_burnsdefi"): "Two victims sharing a Neptune Mutual "
    "write-up link: Citadel on Arbitrum (2024-01-27, $93K), BurnsDefi on BSC (2024-02-05, $67K).",
    ("d:20250820_0x8d2e", "d:20250820_multicallwithxera"): "Two victims in one TenArmor alert on "
    "2025-08-20: 0x8d2e on Base ($40K) and MulticallWithXera on BSC ($17K), different attackers.",
    ("d:20250831_hexotic", "d:20250830_evervaluecoin"): "Different chains, attackers, txs and "
    "losses (Hexotic $500 on Ethereum vs EverValueCoin $100K on Arbitrum) despite one shared "
    "'vulnerable contract' address.",
    (
        "d:20231102_brand",
        "d:20231228_ccv",
    ): "The PoCs share a placeholder attacker 0x835b45d3… used "
    "in many headers; BRAND (2023-11-02) and CCV (2023-12-28) are different tokens and txs.",
    ("d:20250506_crosswise", "d:20250620_tokenvault"): "One attacker (0xc49f2938…) behind many "
    "2025 BSC drains: Crosswise (2025-05-06) and TokenVault (2025-06-20) are different victims.",
    ("d:20240404_wsm", "d:20250426_lifeprotocol"): "The PoCs share attacker 0x3026c464… across "
    "unrelated drains a year apart: WSM (2024-04-04) and Lifeprotocol (2025-04-26).",
    ("n:20230730_curve-vyper", "d:20240223_blueberryprotocol"): "The shared address 0xc0ffeeba… is "
    "the c0ffeebabe.eth front-runner seen in many incidents, not one attacker: Curve/Vyper (2023) "
    "vs Blueberry (2024).",
    ("n:20230730_curve-vyper", "d:20230531_erc20tokenbank"): "Only the c0ffeebabe.eth front-runner "
    "0xc0ffeeba… is shared: Curve/Vyper (2023-07-30) vs ERC20TokenBank (2023-05-31).",
    ("d:20230712_platypus", "d:20230711_libertify"): "A shared 'vulnerable contract' address but "
    "different chains (Avalanche vs Polygon), attackers, txs and losses ($51K vs $452K).",
}
AMBIGUOUS = {  # left out: the facts allow either label
    ("d:20220813_circle", "d:20220816_circle"),  # one attacker and victim, two txs 3 days apart
    ("d:20260525_new-market-trading", "d:20260525_squidroutermodule"),  # one bug, two Safes
    ("d:20250812_bebop", "d:20250812_basebebopsettlement"),  # one contract on two chains
    ("d:20230708_civnft", "d:20230708_civfund"),  # one day, CIVNFT cites Civfund's post-mortem
    ("d:20250815_sizecredit", "d:20250815_sizeflashloanlooping"),  # two Size contracts, one day
    ("d:20250619_bankrollnetwork", "d:20250619_bankrollstack"),  # one day, the same two alerts
}
# One line per group, the first id against each of the others; every pair read one by one.
# Different incidents of one protocol, organisation or name:
SAME_PROTOCOL = """
d:20230217_platypusdefi d:20230712_platypus d:20231012_platypus
d:20230712_platypus d:20231012_platypus
d:20231013_wiselending d:20240112_wiselending d:202401_wiselending03
d:20230620_mimspell d:20240130_mimspell d:20251004_mimspell3 d:20251004_abracadabra
d:20240130_mimspell d:20251004_mimspell3 d:20251004_abracadabra
n:20250325_abracadabra-gmx-cauldron d:20240130_mimspell d:20251004_abracadabra
n:20250325_abracadabra-gmx-cauldron d:20251004_mimspell3
d:20200628_balancer-protocol d:20230827_balancer d:20251103_balancerv2
d:20230827_balancer d:20251103_balancerv2
n:20251103_balancer-v2 d:20230827_balancer d:20200628_balancer-protocol
n:20170719_parity-multisig n:20171106_parity-library-freeze d:20171106_parity
d:20170719_parity-multisig d:20171106_parity n:20171106_parity-library-freeze
n:20210830_cream-aug2021 n:20211027_cream-oct2021 d:20211027_creamfinance
d:20210830_cream-finance d:20211027_creamfinance n:20211027_cream-oct2021
n:20210204_yearn-ydai n:20230413_yearn-yusdt n:20251130_yearn-yeth d:20230413_yearnfinance
n:20210204_yearn-ydai d:20251201_yeth
n:20230413_yearn-yusdt n:20251130_yearn-yeth d:20210204_yearn-ydai d:20251201_yeth
n:20251130_yearn-yeth d:20210204_yearn-ydai d:20230413_yearnfinance
d:20210204_yearn-ydai d:20230413_yearnfinance d:20251201_yeth
d:20230413_yearnfinance d:20251201_yeth
n:20210508_rari-capital-eth-pool n:20220430_rari-fuse d:20220430_rari-capital-fei-protocol
d:20210509_raricapital d:20220430_rari-capital-fei-protocol n:20220430_rari-fuse
n:20210505_value-defi-vbswap-pool n:20210507_value-defi-vswap
n:20210715_thorchain-jul15 n:20210722_thorchain-jul22 n:20260515_thorchain-2026
n:20210722_thorchain-jul22 n:20260515_thorchain-2026
n:20230702_poly-network-2023 n:20210810_poly-network d:20210811_poly-network
n:20240806_ronin-2024 n:20220323_ronin d:20220329_ronin-network
n:20220920_wintermute-vanity n:20220605_wintermute-op d:20220608_optimism
n:20180619_bithumb-2018 n:20190329_bithumb-2019
n:20190627_bitrue-2019 n:20230414_bitrue-2023
n:20191127_upbit-2019 n:20251127_upbit-2025
n:20240516_alex-2024 n:20250606_alex-2025
n:20240622_btcturk-2024 n:20250814_btcturk-2025
n:20160802_bitfinex n:20241024_us-gov-bitfinex-wallet
n:20190507_binance-2019 n:20221006_bnb-token-hub
n:20220402_inverse-apr2022 d:20220616_inversefinance
n:20241016_radiant-capital-oct2024 d:20240102_radiantcapital
n:20211030_bxh d:20220928_bxh
n:20220428_deus-apr2022 d:20230505_dei
n:20211105_bzx-ooki d:20231202_bzxprotocol d:20200912_bzx
d:20200912_bzx d:20231202_bzxprotocol
d:20231220_transitfinance n:20221001_transit-swap d:20221002_transit-swap
n:20230706_multichain d:20220118_multichain-anyswap d:20250729_anyswapwethpermit
d:20220320_li-fi n:20240716_lifi d:20240716_lifiprotocol
d:20230802_curveburner n:20230730_curve-vyper d:20230730_curve
d:20230402_allbridge d:20260819_allbridgecctp
d:20210916_sushiswap-miso d:20230409_sushiswap
d:20230529_babydogecoin d:20230621_babydogecoin02
d:20230511_selltoken01 d:20230513_selltoken02 d:20230514_selltoken03 d:20230611_selltoken04
d:20230513_selltoken02 d:20230514_selltoken03 d:20230611_selltoken04
d:20230514_selltoken03 d:20230611_selltoken04
d:20250106_mosca d:20250113_mosca2
d:20240213_miner d:20240215_miner
d:20231230_channelsfinance d:20231231_channels
d:20220313_hundred-finance d:20230415_hundredfinance
d:20220409_gymnetwork d:20220608_gymnetwork
d:20231101_onyxprotocol d:20240926_onyxdao
d:20240328_lavalending d:20241002_lavalending
d:20230411_paribus d:20250118_paribus
d:20240129_peapodsfinance d:20250208_peapods-finance
d:20251104_moonwell d:20260215_moonwell
d:20230427_silo-finance d:20250625_silofinance
d:20231022_openleverage d:20240401_openleverage
d:20230512_lw d:20240708_lw
d:20240401_atm d:20260622_atm
d:20220928_mevbot d:20231107_mevbot
d:20240507_saturn d:20260414_saturn-protocol
d:20230905_floordao d:20231217_floorprotocol
d:20231018_micdao d:20240102_mic
d:20240923_bankroll-network d:20250619_bankrollnetwork
"""
# Different protocols whose names are close:
SIMILAR_NAMES = """
d:20210519_pancakebunny d:20210603_pancakehunny
n:20210519_pancakebunny d:20210603_pancakehunny
n:20211202_badgerdao d:20210125_sushi-badger-digg
n:20210516_bearn d:20231205_bearndao
n:20210929_compound-prop62 d:20230607_compounderfinance d:20241026_compoundfork
n:20210929_compound-prop62 d:20240223_compounduni
n:20201201_compounder n:20210929_compound-prop62
n:20211208_pizza-ecurve d:20230730_curve
n:20211208_pizza-ecurve n:20230730_curve-vyper
n:20220702_crema d:20211027_creamfinance
n:20220702_crema d:20210830_cream-finance
n:20220702_crema n:20211027_cream-oct2021
n:20210512_xtoken d:20250320_bbxtoken
n:20230403_mev-boost-relay d:20220928_mevbot
n:20230403_mev-boost-relay d:20231107_mevbot
n:20250602_force-bridge d:20230210_dforce
n:20230904_stake-com d:20260315_stakeonme
n:20250922_uxlink d:20231115_linkdao
n:20191127_upbit-2019 d:20220128_qubit-finance
n:20251127_upbit-2025 n:20220127_qubit
n:20201121_pickle d:20240430_pikefinance
n:20260121_sagaevm d:20210628_safedollar
n:20251103_balancer-v2 d:20231107_rbalancer
d:20230827_balancer d:20231107_rbalancer
n:20180421_gate-io n:20190606_gatehub
n:20190220_coinbin n:20190326_coinbene
n:20230912_coinex n:20250719_coindcx
n:20210213_alpha-homora n:20230722_alphapo
n:20221011_mango-markets n:20240107_mangofarmsol
d:20250426_lifeprotocol d:20240716_lifiprotocol
d:20230218_revertfinance d:20220327_revest-finance
d:20221214_nmbplatform d:20210915_nimbus-platform
d:20240430_pikefinance d:20201121_pickle-finance
d:20240412_grokd d:20231110_grok
d:20240430_yield d:20240424_yiedl
d:20240828_aave d:20220315_agave-finance
d:20241026_compoundfork d:20230607_compounderfinance
d:20231101_swampfinance d:20230227_swapx
d:20231005_depayrouter d:20230929_dexrouter
d:20250726_multicallwitheth d:20250820_multicallwithxera
d:20221212_bgld-deflationary-token d:20221207_aes-deflationary-token
"""
# Rows that name no protocol, only "an individual":
INDIVIDUALS = """
n:20230906_coindroplet-phishing-victim n:20231111_binance-user-usdt-drain
n:20230906_coindroplet-phishing-victim n:20260110_trezor-impersonation-btc-ltc
n:20230906_coindroplet-phishing-victim n:20250428_elderly-btc-social-engineering
n:20231111_binance-user-usdt-drain n:20260110_trezor-impersonation-btc-ltc
n:20231111_binance-user-usdt-drain n:20250428_elderly-btc-social-engineering
n:20260110_trezor-impersonation-btc-ltc n:20250428_elderly-btc-social-engineering
n:20260110_trezor-impersonation-btc-ltc n:20240819_genesis-creditor-btc
"""


# --- assembling the set --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    left: Report
    right: Report
    same: bool
    hard: bool
    reason: str


def _key(a: Report, b: Report) -> frozenset[tuple[str, str]]:
    return frozenset({(a.source, a.id), (b.source, b.id)})


def _pairing() -> list[tuple[str, str]]:
    with (HERE / "notable_defihacklabs_pairs.csv").open(newline="", encoding="utf-8") as handle:
        return [(f"n:{r['incident_key']}", f"d:{r['incident_id']}") for r in csv.DictReader(handle)]


def _first_vs_rest(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.strip().splitlines():
        first, *rest = line.split()
        pairs += [(first, other) for other in rest]
    return pairs


def _hard_positive(a: Report, b: Report) -> bool:
    """Hard when a name-and-day match would not find it: other names, days or figures."""
    return not (a.keys & b.keys) or a.date != b.date or a.loss != b.loss


def _related_names(a: Report, b: Report) -> bool:
    """Names that might be one protocol's (a shared key or first four letters): a person's look."""
    return any(x[:4] == y[:4] for x in a.keys for y in b.keys)


def _nearest(report: Report, exclude: set[frozenset[tuple[str, str]]]) -> Report:
    candidates = [d for d in D.values() if _key(report, d) not in exclude and not d.month_only]
    return min(candidates, key=lambda d: (abs((d.date - report.date).days), d.id))


def build() -> list[Pair]:
    pairs: dict[frozenset[tuple[str, str]], Pair] = {}
    positives = {_key(_get(a), _get(b)) for a, b in [*_pairing(), *DUPLICATES]}
    left_out = {_key(_get(a), _get(b)) for a, b in [*AMBIGUOUS, *NOT_A_PAIR]}

    def add(a: Report, b: Report, same: bool, hard: bool, reason: str) -> None:
        key = _key(a, b)
        if a == b or (key in pairs and pairs[key].same != same):
            raise ValueError(f"conflicting labels for {a.id} and {b.id}")
        if not same and key in positives:
            raise ValueError(f"{a.id} and {b.id} are the same incident")
        pairs.setdefault(key, Pair(a, b, same, hard, reason))

    def add_generated(a: Report, b: Report, why: str, hard: bool = True) -> None:
        key = _key(a, b)
        if key in pairs or key in positives or key in left_out:
            return
        if (a.txs & b.txs) or (a.attackers & b.attackers):
            raise ValueError(f"{a.id} and {b.id} share a hard key: label them by hand")
        add(a, b, False, hard, _different_reason(a, b, why))

    for (x, y), reason in DUPLICATES.items():
        add(_get(x), _get(y), True, True, reason)
    for x, y in _pairing():
        left, right = _get(x), _get(y)
        reason = REASONS.get((x, y)) or _same_reason(left, right)
        add(left, right, True, _hard_positive(left, right), reason)
    for (x, y), reason in {**NOT_A_PAIR, **DIFFERENT}.items():
        add(_get(x), _get(y), False, True, reason)
    for text, why in (
        (SAME_PROTOCOL, "Different incidents of one name or organisation"),
        (SIMILAR_NAMES, "Different protocols with similar names"),
        (INDIVIDUALS, "Different individuals robbed at different times"),
    ):
        for x, y in _first_vs_rest(text):
            add_generated(_get(x), _get(y), why)

    # Each paired notable row against the nearest-dated DeFiHackLabs incident that is not its
    # pair, and the unpaired ones that have a DeFiHackLabs incident on their chain within days.
    paired = {a for a, _ in _pairing()}
    for report in sorted(N.values(), key=lambda r: r.id):
        near = _nearest(report, positives | left_out)
        days = abs((near.date - report.date).days)
        if _related_names(report, near):
            continue
        if f"n:{report.id}" in paired or (days <= 2 and set(near.chains) & set(report.chains)):
            add_generated(report, near, "Different victims at about the same time", days <= 7)

    rng = random.Random(SEED)
    # Same day and chain, different victims, inside DeFiHackLabs.
    by_day: defaultdict[tuple[dt.date, str], list[Report]] = defaultdict(list)
    for report in D.values():
        for chain in report.chains[:1] if not report.month_only else ():
            by_day[report.date, chain].append(report)
    same_day = [
        (a, b)
        for group in by_day.values()
        for a, b in combinations(sorted(group, key=lambda r: r.id), 2)
        if not _related_names(a, b) and not (a.txs & b.txs) and not (a.attackers & b.attackers)
    ]
    for a, b in rng.sample(same_day, 40):
        add_generated(a, b, "Different victims on the same day and chain")

    # Easy negatives: random pairs of reports far apart in time, with different names.
    hard_negatives = sum(not p.same and p.hard for p in pairs.values())
    everything = sorted([*D.values(), *N.values()], key=lambda r: (r.source, r.id))
    easy = 0
    while easy < hard_negatives * 3 // 5:
        a, b = rng.sample(everything, 2)
        if _related_names(a, b) or abs((a.date - b.date).days) < 180 or _key(a, b) in pairs:
            continue
        add_generated(a, b, "Unrelated incidents", hard=False)
        easy += 1
    return list(pairs.values())


def main() -> None:
    pairs = build()
    with (HERE / "resolution_pairs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["left_source", "left_id", "right_source", "right_id", "same", "hard", "reason"]
        )
        for p in pairs:
            writer.writerow([p.left.source, p.left.id, p.right.source, p.right.id, int(p.same),
                             int(p.hard), p.reason])  # fmt: skip
    same = sum(p.same for p in pairs)
    hard = sum(p.hard for p in pairs)
    print(f"{len(pairs)} pairs: {same} same, {len(pairs) - same} different, {hard} hard")


if __name__ == "__main__":
    main()

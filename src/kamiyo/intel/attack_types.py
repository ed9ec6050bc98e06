"""The attack types KAMIYO speaks, and what a reviewer checks after each kind of attack.

``kamiyo.intel.vocabulary`` re-exports both and holds the mappings onto them (source wording,
the notable-incidents categories, search words); see its docstring for what each type covers.
"""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class AttackType(StrEnum):
    ACCESS_CONTROL = "access_control"
    REENTRANCY = "reentrancy"
    PRICE_MANIPULATION = "price_manipulation"
    ORACLE_MANIPULATION = "oracle_manipulation"
    FLASH_LOAN = "flash_loan"
    BUSINESS_LOGIC = "business_logic"
    INPUT_VALIDATION = "input_validation"
    ARBITRARY_CALL = "arbitrary_call"
    PRECISION_LOSS = "precision_loss"
    INTEGER_OVERFLOW = "integer_overflow"
    SIGNATURE = "signature"
    TOKEN_MECHANICS = "token_mechanics"  # noqa: S105 (a category, not a secret)
    SLIPPAGE_MEV = "slippage_mev"
    INFLATION_ATTACK = "inflation_attack"
    KEY_COMPROMISE = "key_compromise"
    RUG_PULL = "rug_pull"
    MISCONFIGURATION = "misconfiguration"
    BRIDGE = "bridge"
    GOVERNANCE = "governance"
    BAD_RANDOMNESS = "bad_randomness"
    STORAGE_COLLISION = "storage_collision"
    PHISHING = "phishing"
    SUPPLY_CHAIN = "supply_chain"
    COMPILER_BUG = "compiler_bug"
    OTHER = "other"
    UNKNOWN = "unknown"


# What a reviewer should verify about a protocol that has suffered each kind of attack: short
# imperative checks, given with the detailed (enterprise) risk answer. Every AttackType has an
# entry; a test fails when a type is added without one.
_GENERAL_CHECKS = (
    "Confirm the weakness behind each past incident was found and fixed in the code now deployed.",
    "Check that the deployed contracts were audited after the last incident, and by whom.",
    "Confirm the protocol can pause, and that monitoring would catch an attack in progress.",
)
ATTACK_CHECKS: Mapping[AttackType, tuple[str, ...]] = MappingProxyType(
    {
        AttackType.ACCESS_CONTROL: (
            "Restrict every function that moves funds, mints, upgrades or sets parameters to "
            "the intended role.",
            "Check initializers can run only once, including on implementations behind proxies.",
            "Confirm admin roles sit with a multisig or timelock, not a single key.",
        ),
        AttackType.REENTRANCY: (
            "Check state is updated before external calls (checks-effects-interactions).",
            "Confirm reentrancy guards on every entry point that moves funds, across functions "
            "and contracts.",
            "Check views that others read for prices or balances cannot be stale mid-call "
            "(read-only reentrancy).",
            "Account for token hooks and callbacks: ERC-777, ERC-721/1155 receivers, native "
            "transfers.",
        ),
        AttackType.PRICE_MANIPULATION: (
            "Check prices do not come from one pool's spot reserves or balances.",
            "Confirm no value a user can mint or borrow against can be moved within one "
            "transaction.",
            "Check swaps, mints and redemptions enforce slippage or price-deviation limits.",
        ),
        AttackType.ORACLE_MANIPULATION: (
            "Check price feeds are not a single pool's spot price: a TWAP or several "
            "independent sources.",
            "Confirm feeds are rejected when stale, zero or out of range, and that the protocol "
            "then stops safely.",
            "Check collateral factors and caps reflect how cheaply each asset's price can be "
            "moved.",
        ),
        AttackType.FLASH_LOAN: (
            "Confirm no logic assumes balances, prices or voting power hold still within one "
            "transaction.",
            "Check rewards, shares and votes use snapshots or time-weighted values, not current "
            "balances.",
            "Check flash-loan callbacks verify both the caller and the initiator.",
        ),
        AttackType.BUSINESS_LOGIC: (
            "Write down the accounting invariants (shares vs. assets, debt vs. collateral) and "
            "fuzz them.",
            "Test reward, fee and liquidation maths at the edges: zero, first and last user, "
            "maximum values.",
            "Check multi-step flows cannot be reordered or repeated for profit.",
        ),
        AttackType.INPUT_VALIDATION: (
            "Check every caller-supplied address, amount, array and calldata is validated "
            "before use.",
            "Confirm tokens, pools and markets passed in by callers are checked against an "
            "allow-list.",
            "Check functions reject zero amounts, mismatched arrays and self-referencing "
            "arguments.",
        ),
        AttackType.ARBITRARY_CALL: (
            "Confirm no function forwards caller-chosen targets or calldata.",
            "Check contracts that execute calls hold no standing token approvals from users.",
            "Check routers and aggregators restrict the targets and selectors they call.",
        ),
        AttackType.PRECISION_LOSS: (
            "Check multiplication comes before division and rounding favours the protocol.",
            "Test share and rate maths with tiny and huge amounts and tokens of different "
            "decimals.",
            "Confirm repeated small operations cannot accumulate rounding gains.",
        ),
        AttackType.INTEGER_OVERFLOW: (
            "Confirm checked arithmetic (Solidity 0.8+ or a vetted safe-math library).",
            "Review every unchecked block and downcast for bounds.",
            "Check amounts multiplied by prices or rates stay within the type's range.",
        ),
        AttackType.SIGNATURE: (
            "Check signed messages bind a nonce, deadline, chain id and verifying contract "
            "(EIP-712).",
            "Confirm signature recovery rejects the zero address and malleable signatures.",
            "Check each signature, permit or meta-transaction can be used only once.",
        ),
        AttackType.TOKEN_MECHANICS: (
            "Check fee-on-transfer, rebasing and reflection tokens are handled or refused.",
            "Confirm received amounts are measured by balance difference, not the transfer "
            "argument.",
            "Check a token's burn, mint or fee hooks cannot be triggered to skew pool reserves.",
        ),
        AttackType.SLIPPAGE_MEV: (
            "Check swaps and liquidity changes take a caller-set minimum output and a deadline.",
            "Confirm protocol-run swaps (harvests, rebalances) are bounded by an oracle price or "
            "sent privately.",
            "Check public functions that realise value cannot be front-run for profit.",
        ),
        AttackType.INFLATION_ATTACK: (
            "Check vaults and markets cannot start empty: dead shares or virtual shares and "
            "assets.",
            "Confirm direct donations cannot move the share price used for minting or borrowing.",
            "Check new markets are seeded in the same transaction that lists them.",
        ),
        AttackType.KEY_COMPROMISE: (
            "Check keys that control funds or upgrades live in hardware wallets or HSMs, never "
            "on servers.",
            "Confirm privileged actions need a multisig whose threshold no one person or "
            "machine meets alone.",
            "Check large withdrawals and upgrades pass a timelock that is monitored and can be "
            "halted.",
            "Confirm signers verify what they sign and are trained against phishing.",
        ),
        AttackType.RUG_PULL: (
            "Check the team cannot mint, drain pools or change fees without a timelock.",
            "Confirm liquidity is locked and ownership is renounced or held by a public multisig.",
            "Check the deployed code is verified and matches an audited version.",
        ),
        AttackType.MISCONFIGURATION: (
            "Review deployed parameters (addresses, oracles, fees, caps) against the intended "
            "ones after every change.",
            "Check configuration changes go through a multisig and timelock with range checks.",
            "Confirm deployments use tested scripts, not values set by hand.",
        ),
        AttackType.BRIDGE: (
            "Check messages are verified by a validator set no single operator controls.",
            "Confirm each message is processed once, with its source chain, sender and amount "
            "checked.",
            "Check rate limits and a pause cap what one compromised path can release.",
        ),
        AttackType.GOVERNANCE: (
            "Check voting power is taken from a past snapshot, so borrowed tokens cannot vote.",
            "Confirm passed proposals wait in a timelock long enough for holders to react.",
            "Check quorum and proposal thresholds cannot be met cheaply.",
        ),
        AttackType.BAD_RANDOMNESS: (
            "Check randomness comes from a verifiable source (a VRF), not block data.",
            "Confirm an outcome cannot be read and reverted within the same transaction.",
            "Check participants cannot choose when their bet and its random value are fixed.",
        ),
        AttackType.STORAGE_COLLISION: (
            "Check storage layouts stay compatible across every proxy upgrade.",
            "Confirm proxies keep their own variables in standard (EIP-1967) or namespaced slots.",
            "Check upgrades with a storage-layout tool before they are deployed.",
        ),
        AttackType.PHISHING: (
            "Confirm staff who approve withdrawals or sign are trained against impersonation.",
            "Check users are warned before signing approvals, permits or unknown contracts.",
            "Confirm support never asks for seed phrases and says so where users see it.",
        ),
        AttackType.SUPPLY_CHAIN: (
            "Check dependencies are pinned, verified and reviewed before each release.",
            "Confirm the served front end matches reviewed code (integrity checks, CSP).",
            "Check DNS, CDN and registry accounts are locked down with hardware 2FA.",
            "Confirm signers verify transactions on a device, not only in a web page.",
        ),
        AttackType.COMPILER_BUG: (
            "Check which compiler versions the deployed contracts were built with.",
            "Confirm contracts built with a compiler version affected by a known bug are migrated.",
            "Check tests and audits ran against the compiled bytecode, not only the source.",
        ),
        AttackType.OTHER: _GENERAL_CHECKS,
        AttackType.UNKNOWN: _GENERAL_CHECKS,
    }
)

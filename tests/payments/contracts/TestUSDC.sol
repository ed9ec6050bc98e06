// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title TestUSDC
/// @notice A small USDC look-alike for local-chain payment tests: a 6-decimal ERC-20 with
/// EIP-3009 `transferWithAuthorization`, signed over the same EIP-712 domain as USDC
/// (name "USD Coin", version "2"). Revert reasons reuse USDC's wording because x402
/// facilitators map them to error codes by substring ("authorization is expired", ...).
contract TestUSDC {
    string public constant name = "USD Coin";
    string public constant symbol = "USDC";
    string public constant version = "2";
    uint8 public constant decimals = 6;

    bytes32 public constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    // Largest s of a canonical (low-s) secp256k1 signature, per EIP-2. Each signature has a
    // twin with s' = n - s that recovers the same signer; refusing the high half keeps a
    // signature from being replayed under a second encoding.
    uint256 private constant MAX_LOW_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ERC-1271: what isValidSignature(bytes32,bytes) returns for a signature it accepts.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    address public immutable owner;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(bytes32 => bool)) private _usedAuthorizations;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    constructor() {
        owner = msg.sender;
    }

    /// @notice The EIP-712 domain separator for this deployment.
    /// @dev Derived on every call rather than cached, so it always names the current chain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH,
                keccak256(bytes(name)),
                keccak256(bytes(version)),
                block.chainid,
                address(this)
            )
        );
    }

    function mint(address to, uint256 value) external {
        require(msg.sender == owner, "TestUSDC: caller is not the owner");
        require(to != address(0), "TestUSDC: mint to the zero address");
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    /// @notice Whether `authorizer` has already used `nonce` (EIP-3009).
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _usedAuthorizations[authorizer][nonce];
    }

    /// @notice EIP-3009 transfer signed by an externally owned account, as (v, r, s).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        bytes32 digest = _checkAuthorization(from, to, value, validAfter, validBefore, nonce);
        require(_recover(digest, v, r, s) == from, "TestUSDC: invalid signature");
        _useAuthorization(from, nonce);
        _transfer(from, to, value);
    }

    /// @notice EIP-3009 transfer with a packed signature: 65 bytes (r, s, v) from an
    /// externally owned account, or anything a contract wallet accepts through ERC-1271.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        bytes32 digest = _checkAuthorization(from, to, value, validAfter, validBefore, nonce);
        require(_isValidSignature(from, digest, signature), "TestUSDC: invalid signature");
        _useAuthorization(from, nonce);
        _transfer(from, to, value);
    }

    /// @dev Checks the validity window and the nonce, then returns the EIP-712 digest to sign.
    function _checkAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce
    ) private view returns (bytes32) {
        require(block.timestamp > validAfter, "TestUSDC: authorization is not yet valid");
        require(block.timestamp < validBefore, "TestUSDC: authorization is expired");
        require(!_usedAuthorizations[from][nonce], "TestUSDC: authorization is used");
        bytes32 structHash = keccak256(
            abi.encode(
                TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    function _useAuthorization(address authorizer, bytes32 nonce) private {
        _usedAuthorizations[authorizer][nonce] = true;
        emit AuthorizationUsed(authorizer, nonce);
    }

    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        if (signer.code.length > 0) {
            (bool ok, bytes memory result) = signer.staticcall(
                abi.encodeWithSignature("isValidSignature(bytes32,bytes)", digest, signature)
            );
            return ok && result.length >= 32
                && abi.decode(result, (bytes32)) == bytes32(ERC1271_MAGIC_VALUE);
        }
        require(signature.length == 65, "TestUSDC: invalid signature length");
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        return _recover(digest, v, r, s) == signer;
    }

    /// @dev ecrecover with the malleability checks it lacks; never returns the zero address.
    function _recover(bytes32 digest, uint8 v, bytes32 r, bytes32 s) private pure returns (address) {
        require(uint256(s) <= MAX_LOW_S, "TestUSDC: invalid signature 's' value");
        require(v == 27 || v == 28, "TestUSDC: invalid signature 'v' value");
        address recovered = ecrecover(digest, v, r, s);
        require(recovered != address(0), "TestUSDC: invalid signature");
        return recovered;
    }

    function _transfer(address from, address to, uint256 value) private {
        require(to != address(0), "TestUSDC: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "TestUSDC: transfer amount exceeds balance");
        unchecked {
            balanceOf[from] = balance - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

// Compiles one Solidity file with solc-js and prints {"abi": [...], "bytecode": "0x..."} as JSON
// on stdout. Compiler messages go to stderr; a compile error exits non-zero.
//
//   node compile_contract.mjs <file.sol> [ContractName]
//
// The contract defaults to the one named like the file. The file must not import others.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import solc from "solc";

const [file, wanted] = process.argv.slice(2);
if (!file) {
  console.error("usage: node compile_contract.mjs <file.sol> [ContractName]");
  process.exit(2);
}

const sourceName = basename(file);
const contractName = wanted ?? basename(file, ".sol");
const input = {
  language: "Solidity",
  sources: { [sourceName]: { content: readFileSync(file, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // Pinned so the bytecode does not depend on which hardfork this solc release defaults to;
    // every current anvil hardfork runs Cancun code.
    evmVersion: "cancun",
    outputSelection: { [sourceName]: { [contractName]: ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const messages = output.errors ?? [];
for (const message of messages) {
  console.error(message.formattedMessage ?? message.message);
}
if (messages.some((message) => message.severity === "error")) {
  process.exit(1);
}

const contract = output.contracts?.[sourceName]?.[contractName];
if (!contract) {
  const found = Object.keys(output.contracts?.[sourceName] ?? {});
  console.error(`no contract ${contractName} in ${file} (found: ${found.join(", ") || "none"})`);
  process.exit(1);
}
const bytecode = contract.evm.bytecode.object;
if (!bytecode) {
  console.error(`${contractName} has no bytecode (abstract contract or interface?)`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ abi: contract.abi, bytecode: `0x${bytecode}` })}\n`);

// autocannon cycling through a list of request bodies: the CLI sends only one body.
// Reads {url, connections, duration, headers, bodies} as JSON on stdin, prints autocannon's
// result as JSON on stdout. Each connection sends the bodies in turn and starts over.
"use strict";
const autocannon = require("autocannon");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { url, connections, duration, headers, bodies } = JSON.parse(input);
  const requests = bodies.map((body) => ({ method: "POST", body }));
  autocannon({ url, connections, duration, headers, requests }, (err, result) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify(result));
  });
});

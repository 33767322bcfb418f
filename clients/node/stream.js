#!/usr/bin/env node
// Streams a chat answer token by token, then checks health; prints one JSON
// summary line. Usage:
//   node stream.js [--address 127.0.0.1:50051] [--model mock-chat] [--text "..."] [--key SECRET]
"use strict";

const { connect, withKey } = require("./infergate");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

function streamTokens(router, request, metadata) {
  return new Promise((resolve, reject) => {
    const deltas = [];
    let last = null;
    const deadline = new Date(Date.now() + 30_000);
    const call = router.GenerateStream(request, metadata, { deadline });
    call.on("data", (chunk) => {
      deltas.push(chunk.delta);
      if (process.env.INFERGATE_ECHO) process.stderr.write(chunk.delta);
      last = chunk;
    });
    call.on("error", reject);
    call.on("end", () => resolve({ deltas, last }));
  });
}

function check(health, service) {
  return new Promise((resolve, reject) => {
    health.Check({ service }, (error, reply) => (error ? reject(error) : resolve(reply.status)));
  });
}

async function main() {
  const client = connect(option("address", "127.0.0.1:50051"));
  try {
    const request = {
      model: option("model", "mock-chat"),
      messages: [{ role: "user", content: option("text", "hello from node") }],
      params: { maxTokens: Number(option("max-tokens", "16")) },
    };
    const { deltas, last } = await streamTokens(client.router, request, withKey(option("key")));
    const summary = {
      chunks: deltas.length,
      text: deltas.join(""),
      finishReason: last && last.finishReason,
      outputTokens: last && last.usage ? last.usage.outputTokens : 0,
      health: await check(client.health, ""),
      routerHealth: await check(client.health, "infergate.v1.Router"),
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
  } finally {
    client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.code !== undefined ? `gRPC ${error.code}: ` : ""}${error.message}\n`);
  process.exit(1);
});

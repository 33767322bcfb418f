// infergate clients for Node.js: @grpc/grpc-js with the protos loaded at runtime
// by @grpc/proto-loader (no generated JavaScript to keep in step with protos/).
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const HERE = __dirname;
// protos/ of the repository, this package's own protos (grpc.health.v1), and the
// google/api annotations that `make clients` copies into third_party/.
const INCLUDE_DIRS = [
  path.resolve(HERE, "..", "..", "protos"),
  path.join(HERE, "protos"),
  path.join(HERE, "third_party"),
];
const FILES = [
  "infergate/v1/router.proto",
  "infergate/v1/dataset.proto",
  "infergate/v1/app.proto",
  "infergate/v1/tasks.proto",
  "grpc/health/v1/health.proto",
];

function load(includeDirs = INCLUDE_DIRS) {
  const definition = protoLoader.loadSync(FILES, {
    includeDirs,
    keepCase: false, // lowerCamelCase field names, as in the REST JSON
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

// Stubs for every service at `address` ("host:port"), sharing one channel.
function connect(address, credentials = grpc.credentials.createInsecure()) {
  const root = load();
  const v1 = root.infergate.v1;
  const router = new v1.Router(address, credentials);
  const options = { channelOverride: router.getChannel() };
  return {
    router,
    dataset: new v1.Dataset(address, credentials, options),
    app: new v1.App(address, credentials, options),
    tasks: new v1.Tasks(address, credentials, options),
    health: new root.grpc.health.v1.Health(address, credentials, options),
    close: () => router.close(),
  };
}

// Bearer-key metadata for a gateway with auth on.
function withKey(secret) {
  const metadata = new grpc.Metadata();
  if (secret) metadata.set("authorization", `Bearer ${secret}`);
  return metadata;
}

module.exports = { connect, load, withKey, grpc };

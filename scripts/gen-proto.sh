#!/usr/bin/env bash
# Regenerates Sources/SundialProto/Generated from proto/sundial/v1/*.proto.
# protoc comes from Debian (protobuf-compiler); protoc-gen-swift is built from the
# swift-protobuf version this package pins, in .build-protoc/ (first run ≈ 2–10 min).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
version=$(sed -n 's/.*swift-protobuf.git", from: "\([0-9.]*\)".*/\1/p' Package.swift)
plugin_dir="$root/.build-protoc/swift-protobuf"
if [ ! -x "$plugin_dir/.build/release/protoc-gen-swift" ]; then
  rm -rf "$plugin_dir"
  git clone -q https://github.com/apple/swift-protobuf.git "$plugin_dir"
  git -C "$plugin_dir" checkout -q "$version"
  (cd "$plugin_dir" && swift build -c release --product protoc-gen-swift)
fi
out=Sources/SundialProto/Generated
rm -f "$out"/*.pb.swift
protoc --plugin=protoc-gen-swift="$plugin_dir/.build/release/protoc-gen-swift" \
  --swift_out="$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  -I proto proto/sundial/v1/*.proto
echo "generated: $(ls "$out")"

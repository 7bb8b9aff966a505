#!/usr/bin/env bash
# `make run`: migrate, load demo data, then run the web server and Celery (worker and beat) until
# Ctrl-C. On the embedded default (no REDIS_URL) tasks run in-process and an in-process loop
# stands in for beat; with REDIS_URL set, a real worker and beat run beside the web server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PYTHONUNBUFFERED=1  # logs and printed credentials appear at once
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-tidportal.settings.local}"
ADDR="${TID_RUN_ADDR:-127.0.0.1:8000}"
mkdir -p var

$BIN/python manage.py migrate --noinput
$BIN/python manage.py signing_key_generate --if-missing
$BIN/python manage.py demo_data

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
if [ -n "${REDIS_URL:-}" ]; then
  $BIN/celery -A tidportal worker --loglevel=INFO --concurrency=2 &
  $BIN/celery -A tidportal beat --loglevel=INFO --schedule=var/celerybeat-schedule &
else
  $BIN/python manage.py embedded_beat &
fi
echo "tidportal: http://$ADDR/  (staff: http://$ADDR/admin/)  Ctrl-C stops everything."
$BIN/python manage.py runserver "$ADDR" --noreload

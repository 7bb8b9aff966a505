// The public JSON API of DESIGN.md section 6, as the reporter pages call it.
//
// Every request is a small JSON body of hashes or of a case number and PIN: never a file. The
// CSRF token comes from the cookie the page views set (ensure_csrf_cookie); the browser adds
// Accept-Language itself, so the server's error texts arrive in the page's language.

const { gettext, interpolate, ngettext } = globalThis;

export const ENDPOINTS = {
  report: "/api/public/reports",
  status: "/api/public/cases/status",
  items: "/api/public/cases/items",
  withdraw: "/api/public/cases/withdraw",
};

export class ApiError extends Error {
  constructor({ status, code, detail, fields, retryAfter }) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.fields = fields || {};
    this.retryAfter = retryAfter;
  }
}

function csrfToken() {
  const match = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return match ? decodeURIComponent(match.slice("csrftoken=".length)) : "";
}

// What to say when the server's answer carries no readable detail (or never arrived).
function fallbackDetail(status) {
  switch (status) {
    case 0:
      return gettext(
        "We could not reach the service. Check your internet connection and try again. Your files are still here.",
      );
    case 403:
      return gettext("This page has expired. Reload it and try again.");
    case 404:
      return gettext("We could not find a case with that number and PIN. Check both and try again.");
    case 413:
      return gettext("That is too much to send at once. Remove some files and try again.");
    case 429:
      return gettext("Too many tries. Please wait a while, then try again.");
    default:
      return gettext("Something went wrong on our side. Please try again in a few minutes.");
  }
}

/** A sentence for a Retry-After value in seconds, or "" when there is none. */
export function waitSentence(seconds) {
  if (!seconds || seconds <= 0) return "";
  const minutes = Math.ceil(seconds / 60);
  return interpolate(
    ngettext(
      "You can try again in %s minute.",
      "You can try again in %s minutes.",
      minutes,
    ),
    [minutes],
  );
}

/** POST `data` as JSON; resolve to the parsed answer, or reject with an ApiError. */
export async function postJson(url, data) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify(data),
    });
  } catch {
    throw new ApiError({ status: 0, code: "network", detail: fallbackDetail(0) });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null; // an HTML error page from a proxy, or an empty answer
  }
  if (response.ok && body) return body;
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  throw new ApiError({
    status: response.status,
    code: body?.error || "error",
    detail: body?.detail || fallbackDetail(response.status),
    fields: body?.fields,
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : undefined,
  });
}

/** Field errors as {itemIndex: [messages]} and the remaining (not per-file) messages. */
export function splitFieldErrors(fields) {
  const perItem = new Map();
  const other = [];
  for (const [key, messages] of Object.entries(fields || {})) {
    const match = /^items\.(\d+)(?:\.|$)/.exec(key);
    const list = Array.isArray(messages) ? messages : [String(messages)];
    if (match) {
      const index = Number(match[1]);
      perItem.set(index, [...(perItem.get(index) || []), ...list]);
    } else {
      other.push(...list);
    }
  }
  return { perItem, other };
}

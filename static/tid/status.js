// The status page (/status/): look a case up with its number and PIN, then see what happened,
// add more files, or withdraw it.
//
// The case number and PIN are kept in this module's memory only, for as long as the page is
// open: never in localStorage, a cookie or a URL. Once the case is shown, the PIN field is
// emptied, and "Done" forgets both.

import { ApiError, ENDPOINTS, postJson, splitFieldErrors, waitSentence } from "./api.js";
import {
  createFilePicker,
  describeCounts,
  describeFailure,
  guardWindowDrops,
  HashPool,
} from "./files.js";
import { createSteps, setMessage } from "./steps.js";

const { gettext, interpolate, ngettext } = globalThis;

const root = document.querySelector("[data-status-flow]");
root.hidden = false;
guardWindowDrops();

const steps = createSteps(root);
const form = root.querySelector("[data-lookup-form]");
const caseInput = form.elements.case_number;
const pinInput = form.elements.pin;
const lookupError = root.querySelector("[data-lookup-error]");
const lookupButton = root.querySelector("[data-lookup-submit]");
const notice = root.querySelector("[data-case-notice]");
const addError = root.querySelector("[data-add-error]");
const addButton = root.querySelector("[data-add-submit]");
const withdrawError = root.querySelector("[data-withdraw-error]");
const withdrawButton = root.querySelector("[data-withdraw-confirm]");
const pinDigits = Number(root.dataset.pinDigits) || 8;

let credentials = null; // {case_number, pin} while a case is open on this page

const pool = new HashPool({ workerUrl: root.dataset.workerUrl, hashingUrl: root.dataset.hashingUrl });
const picker = createFilePicker(root.querySelector("[data-picker]"), {
  pool,
  maxFiles: Number(root.dataset.maxFiles) || 200,
});

// What each status means for the reporter, in plain words (the server names the status).
const EXPLANATIONS = {
  received: gettext("We have your report. Our team will look at it soon."),
  in_review: gettext("Our team is reviewing your report."),
  accepted: gettext(
    "Your fingerprints are on the list. Participating platforms use it to find copies and remove them.",
  ),
  not_accepted: gettext(
    "Our team could not accept this report. If you think this is a mistake, or you have other files, you can make a new report.",
  ),
  duplicate: gettext(
    "These files were already reported in another case, so they are already on the list or being reviewed there.",
  ),
  withdrawn: gettext(
    "This case was withdrawn. Its fingerprints are no longer on the list that platforms use.",
  ),
};

// Case numbers --------------------------------------------------------------------------------

const CASE_ALPHABET = /^[0-9A-HJKMNP-TV-Z]{8}$/;

/** "tid 7k3m q9xp" -> "TID-7K3M-Q9XP"; null when it cannot be a case number. The server
 * normalises the same way; doing it here lets us point at a typo before anything is sent. */
export function normaliseCaseNumber(raw) {
  let text = raw.toUpperCase().replace(/[^0-9A-Z]/g, "");
  if (text.startsWith("TID")) text = text.slice(3);
  // The alphabet has no O, I or L, so those can only be mistyped 0, 1 and 1.
  text = text.replace(/O/g, "0").replace(/[IL]/g, "1");
  return CASE_ALPHABET.test(text) ? `TID-${text.slice(0, 4)}-${text.slice(4)}` : null;
}

function fieldError(name, text) {
  const field = form.querySelector(`[data-field="${name}"]`);
  const box = field.querySelector("[data-error]");
  const input = field.querySelector(".text-input");
  box.textContent = text;
  box.hidden = !text;
  field.classList.toggle("field-invalid", Boolean(text));
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return text ? input : null;
}

caseInput.addEventListener("blur", () => {
  const normal = normaliseCaseNumber(caseInput.value);
  if (normal) caseInput.value = normal;
});

root.querySelector("[data-show-pin]").addEventListener("change", (event) => {
  pinInput.type = event.target.checked ? "text" : "password";
});

// Showing a case ------------------------------------------------------------------------------

function formatWhen(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
    dateStyle: "long",
    timeStyle: "short",
  }).format(date);
}

function platformCount(n) {
  if (!n) return gettext("None so far");
  return interpolate(ngettext("%s platform", "%s platforms", n), [n]);
}

function renderCase(data) {
  root.querySelector("#case-title").textContent = interpolate(gettext("Case %s"), [
    data.case_number,
  ]);
  const badge = root.querySelector("[data-case-status]");
  badge.textContent = data.status_label;
  badge.dataset.status = data.status;
  root.querySelector("[data-case-explanation]").textContent = EXPLANATIONS[data.status] || "";
  const reason = root.querySelector("[data-case-reason]");
  reason.hidden = !data.rejection_reason_label;
  reason.textContent = data.rejection_reason_label
    ? interpolate(gettext("Reason: %s"), [data.rejection_reason_label])
    : "";
  root.querySelector("[data-case-files]").textContent = describeCounts({
    images: data.images || 0,
    videos: data.videos || 0,
  });
  root.querySelector("[data-case-matched]").textContent = platformCount(data.platforms_matched);
  root.querySelector("[data-case-removed]").textContent = platformCount(data.platforms_removed);

  const timeline = root.querySelector("[data-case-timeline]");
  timeline.replaceChildren(
    ...data.timeline.map((event) => {
      const li = document.createElement("li");
      li.dataset.event = event.event;
      const label = document.createElement("span");
      label.className = "timeline-label";
      label.textContent = event.label;
      const time = document.createElement("time");
      time.dateTime = event.at;
      time.textContent = formatWhen(event.at);
      li.append(label, time);
      return li;
    }),
  );
  root.querySelector("[data-open-add]").hidden = !data.can_add_items;
  root.querySelector("[data-open-withdraw]").hidden = !data.can_withdraw;
}

function showCase(data, message = "") {
  renderCase(data);
  setMessage(notice, message);
  steps.show("case");
}

// Looking a case up ---------------------------------------------------------------------------

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  setMessage(lookupError, "");
  const caseNumber = normaliseCaseNumber(caseInput.value);
  const pin = pinInput.value.replace(/[\s-]/g, "");
  const invalid = [
    fieldError(
      "case_number",
      caseInput.value.trim() === ""
        ? gettext("Enter your case number.")
        : caseNumber
          ? ""
          : gettext(
              "A case number has 8 letters and numbers after TID, like TID-7K3M-Q9XP. Check it and try again.",
            ),
    ),
    fieldError(
      "pin",
      pin === ""
        ? gettext("Enter your PIN.")
        : /^\d+$/.test(pin) && pin.length === pinDigits
          ? ""
          : interpolate(gettext("The PIN has %s digits."), [pinDigits]),
    ),
  ].filter(Boolean);
  if (invalid.length) {
    invalid[0].focus();
    return;
  }
  caseInput.value = caseNumber;
  lookupButton.disabled = true;
  try {
    const data = await postJson(ENDPOINTS.status, { case_number: caseNumber, pin });
    credentials = { case_number: data.case_number || caseNumber, pin };
    pinInput.value = ""; // the PIN stays in memory only, not in the page
    showCase(data);
  } catch (error) {
    const lines = error instanceof ApiError ? [error.detail] : [String(error)];
    if (error instanceof ApiError) {
      const { other } = splitFieldErrors(error.fields);
      lines.push(...other.filter((line) => line !== error.detail));
      if (error.status === 429) lines.push(waitSentence(error.retryAfter));
    }
    setMessage(lookupError, lines, { focus: true });
  } finally {
    lookupButton.disabled = false;
  }
});

// When the server no longer accepts the case number and PIN (locked, say), start over.
function handleLostAccess(error) {
  if (error instanceof ApiError && (error.status === 404 || error.status === 429)) {
    forget();
    const lines = [error.detail];
    if (error.status === 429) lines.push(waitSentence(error.retryAfter));
    setMessage(lookupError, lines, { focus: true });
    return true;
  }
  return false;
}

// Adding files --------------------------------------------------------------------------------

root.querySelector("[data-open-add]").addEventListener("click", () => {
  picker.clear();
  setMessage(addError, "");
  steps.show("add");
});

addButton.addEventListener("click", async () => {
  if (picker.busy()) {
    setMessage(
      addError,
      gettext("Some files are still being fingerprinted. This can take a moment for videos."),
      { focus: true },
    );
    return;
  }
  const entries = picker.ready();
  if (entries.length === 0) {
    setMessage(addError, gettext("Choose at least one image or video to add."), { focus: true });
    return;
  }
  addButton.disabled = true;
  setMessage(addError, "");
  try {
    const counts = picker.counts();
    const data = await postJson(ENDPOINTS.items, {
      ...credentials,
      items: entries.map((entry) => entry.result),
    });
    picker.clear();
    showCase(
      data,
      interpolate(gettext("Thank you. We added the fingerprints of %s to your case."), [
        describeCounts(counts),
      ]),
    );
  } catch (error) {
    if (!handleLostAccess(error)) {
      setMessage(addError, describeFailure(error, entries, picker), { focus: true });
    }
  } finally {
    addButton.disabled = false;
  }
});

// Withdrawing ---------------------------------------------------------------------------------

root.querySelector("[data-open-withdraw]").addEventListener("click", () => {
  setMessage(withdrawError, "");
  steps.show("withdraw");
});

withdrawButton.addEventListener("click", async () => {
  withdrawButton.disabled = true;
  try {
    const data = await postJson(ENDPOINTS.withdraw, credentials);
    showCase(data, gettext("Your case was withdrawn."));
  } catch (error) {
    if (!handleLostAccess(error)) {
      const lines = error instanceof ApiError ? [error.detail] : [String(error)];
      setMessage(withdrawError, lines, { focus: true });
    }
  } finally {
    withdrawButton.disabled = false;
  }
});

// Forgetting ----------------------------------------------------------------------------------

function forget() {
  credentials = null;
  picker.clear();
  form.reset();
  pinInput.type = "password";
  for (const name of ["case_number", "pin"]) fieldError(name, "");
  setMessage(notice, "");
  steps.show("lookup");
}

root.querySelector("[data-forget]").addEventListener("click", forget);

steps.show("lookup", { focus: false });

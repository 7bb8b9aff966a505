// The report page (/report/): eligibility -> files -> review -> send -> receipt.
//
// Nothing leaves the device until "Send report", and then only a small JSON body: the two
// answers and the files' hashes. The case number and PIN of the answer live in this page only.

import { ENDPOINTS, postJson } from "./api.js";
import {
  createFilePicker,
  describeCounts,
  describeFailure,
  guardWindowDrops,
  HashPool,
} from "./files.js";
import { createSteps, setMessage } from "./steps.js";

const { gettext, interpolate } = globalThis;

const root = document.querySelector("[data-report-flow]");
root.hidden = false;
guardWindowDrops();

const steps = createSteps(root);
const form = root.querySelector("[data-eligibility-form]");
const filesError = root.querySelector("[data-files-error]");
const submitError = root.querySelector("[data-submit-error]");
const submitButton = root.querySelector("[data-submit]");

const REPORTER_LABELS = {
  self: gettext("You, the person in the images"),
  parent: gettext("A parent or guardian"),
  trusted_adult: gettext("A trusted adult"),
};

const pool = new HashPool({ workerUrl: root.dataset.workerUrl, hashingUrl: root.dataset.hashingUrl });
const picker = createFilePicker(root.querySelector("[data-picker]"), {
  pool,
  maxFiles: Number(root.dataset.maxFiles) || 200,
  // Called on later changes only, once `picker` exists.
  onChange: () => {
    if (picker.ready().length) setMessage(filesError, "");
  },
});

let answers = null;

// Step 1 ---------------------------------------------------------------------------------------

function fieldError(name, text) {
  const fieldset = form.querySelector(`[data-field="${name}"]`);
  const box = fieldset.querySelector("[data-error]");
  box.textContent = text;
  box.hidden = !text;
  fieldset.classList.toggle("field-invalid", Boolean(text));
  for (const radio of fieldset.querySelectorAll("input")) {
    if (text) radio.setAttribute("aria-invalid", "true");
    else radio.removeAttribute("aria-invalid");
  }
  return text ? fieldset : null;
}

form.addEventListener("change", (event) => {
  const fieldset = event.target.closest("[data-field]");
  if (fieldset) fieldError(fieldset.dataset.field, "");
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const reporter = form.elements.reporter.value;
  const under18 = form.elements.under18.value;
  const invalid = [
    fieldError("reporter", reporter ? "" : gettext("Choose who is making this report.")),
    fieldError("under18", under18 ? "" : gettext("Choose yes or no.")),
  ].filter(Boolean);
  if (invalid.length) {
    // Focus the first unanswered question's first choice: its error is read with it.
    invalid[0].querySelector("input").focus();
    return;
  }
  if (under18 === "no") {
    steps.show("adult");
    return;
  }
  answers = { reporter, under_18_when_made: true };
  steps.show("files");
});

// Step 2 ---------------------------------------------------------------------------------------

root.querySelector("[data-to-review]").addEventListener("click", () => {
  if (picker.busy()) {
    setMessage(
      filesError,
      gettext("Some files are still being fingerprinted. This can take a moment for videos."),
    );
    return;
  }
  if (picker.ready().length === 0) {
    setMessage(filesError, gettext("Choose at least one image or video to continue."));
    picker.focus();
    return;
  }
  setMessage(filesError, "");
  renderReview();
  steps.show("review");
});

// Step 3 ---------------------------------------------------------------------------------------

function itemsToSend() {
  return picker.ready().map((entry) => entry.result);
}

function renderReview() {
  root.querySelector("[data-review-reporter]").textContent = REPORTER_LABELS[answers.reporter];
  root.querySelector("[data-review-files]").textContent = describeCounts(picker.counts());
  const kilobytes = Math.max(1, Math.round(JSON.stringify(itemsToSend()).length / 1024));
  root.querySelector("[data-review-size]").textContent = interpolate(
    gettext("That is about %s KB of letters and numbers."),
    [kilobytes],
  );
  setMessage(submitError, "");
}

submitButton.addEventListener("click", async () => {
  const entries = picker.ready();
  if (entries.length === 0) {
    steps.show("files");
    return;
  }
  submitButton.disabled = true;
  submitButton.textContent = gettext("Sending…");
  setMessage(submitError, "");
  try {
    const receipt = await postJson(ENDPOINTS.report, {
      ...answers,
      items: entries.map((entry) => entry.result),
    });
    showReceipt(receipt, picker.counts());
  } catch (error) {
    renderReview();
    setMessage(submitError, describeFailure(error, entries, picker), { focus: true });
  } finally {
    submitButton.disabled = false;
    submitButton.textContent = gettext("Send report");
  }
});

// Step 4 ---------------------------------------------------------------------------------------

function showReceipt({ case_number: caseNumber, pin }, counts) {
  root.querySelector("[data-receipt-case]").textContent = caseNumber;
  root.querySelector("[data-receipt-pin]").textContent = pin;
  root.querySelector("[data-receipt-files]").textContent = interpolate(
    gettext("We received the fingerprints of %s."),
    [describeCounts(counts)],
  );
  const statusLink = root.querySelector("a[href$='/status/']");
  root.querySelector("[data-status-address]").textContent = statusLink.href;
  // The files are no longer needed: forget them and their thumbnails.
  picker.clear();
  answers = null;
  form.reset();
  steps.show("receipt");
}

root.querySelector("[data-print]").addEventListener("click", () => window.print());

steps.show("eligibility", { focus: false });

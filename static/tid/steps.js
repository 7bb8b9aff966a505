// One page, several steps: exactly one `[data-step]` section is visible at a time. Moving to a
// step focuses its heading, so keyboard and screen-reader users start reading at the new step
// instead of being left on a button that has just disappeared.

export function createSteps(root, { onShow } = {}) {
  const steps = new Map(
    [...root.querySelectorAll("[data-step]")].map((section) => [section.dataset.step, section]),
  );
  let current = [...steps.values()].find((section) => !section.hidden)?.dataset.step;
  const pageTitle = document.title;

  function show(name, { focus = true } = {}) {
    const target = steps.get(name);
    if (!target) throw new Error(`No step named ${name}`);
    for (const section of steps.values()) section.hidden = section !== target;
    current = name;
    onShow?.(name);
    // The window title names the step too: it is what a screen reader announces on return to
    // the tab, and what the browser's history shows.
    const heading = target.querySelector("[data-step-heading]");
    const stepTitle = heading?.textContent.trim();
    document.title =
      stepTitle && !pageTitle.startsWith(stepTitle) ? `${stepTitle} · ${pageTitle}` : pageTitle;
    if (focus) {
      window.scrollTo(0, 0);
      heading?.focus();
    }
  }

  // Back buttons name the step they return to.
  root.addEventListener("click", (event) => {
    const back = event.target.closest("[data-back]");
    if (back && root.contains(back)) show(back.dataset.back);
  });

  return {
    show,
    get current() {
      return current;
    },
  };
}

/** Show or clear a message box (`role=alert` boxes announce themselves when filled). */
export function setMessage(box, text, { focus = false } = {}) {
  if (!box) return;
  box.replaceChildren();
  const lines = Array.isArray(text) ? text.filter(Boolean) : [text].filter(Boolean);
  for (const line of lines) {
    const p = document.createElement("p");
    p.textContent = line;
    box.append(p);
  }
  box.hidden = lines.length === 0;
  if (focus && lines.length) box.focus();
}

// Copy buttons: <button data-copy="ID"> copies the text of the element with that id.
// A file of its own because the pages' CSP allows no inline script.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  const status = document.getElementById("announce");
  try {
    await navigator.clipboard.writeText(source.textContent);
    if (status) status.textContent = "Copied to the clipboard.";
  } catch (error) {
    if (status) status.textContent = "Could not copy: select the text and copy it by hand.";
  }
});

// Progressive enhancement only: the form works without JavaScript.
"use strict";

function showSliderValue() {
  const slider = document.getElementById("tamanho");
  const shown = document.getElementById("tamanho-valor");
  if (!slider || !shown) return;
  slider.addEventListener("input", () => { shown.value = slider.value; });
}

function wireVisibilityToggles() {
  for (const button of document.querySelectorAll("[data-toggle-target]")) {
    const field = document.getElementById(button.dataset.toggleTarget);
    button.addEventListener("click", () => {
      const hidden = field.type === "password";
      field.type = hidden ? "text" : "password";
      button.textContent = hidden ? "Ocultar" : "Mostrar";
      button.setAttribute("aria-pressed", String(hidden));
    });
  }
}

async function copyText(field) {
  // The Clipboard API exists only in secure contexts (HTTPS or localhost); plain HTTP
  // deployments fall back to selecting the text and the older copy command.
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(field.value);
    return;
  }
  const originalType = field.type;
  field.type = "text";
  field.select();
  const copied = document.execCommand("copy");
  field.type = originalType;
  window.getSelection().removeAllRanges();
  if (!copied) throw new Error("copy command refused");
}

function wireCopyButtons() {
  for (const button of document.querySelectorAll("[data-copy-target]")) {
    const field = document.getElementById(button.dataset.copyTarget);
    const label = button.textContent;
    button.addEventListener("click", async () => {
      try {
        await copyText(field);
        button.textContent = "Copiada!";
      } catch {
        button.textContent = "Falhou";
      }
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showSliderValue();
  wireVisibilityToggles();
  wireCopyButtons();
});

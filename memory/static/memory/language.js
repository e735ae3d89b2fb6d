// The language menu of the admin: choosing a language submits its form (the Content-Security-Policy
// runs no inline handler; without JavaScript the button in <noscript> does it).
const languageSelect = document.getElementById("memory-language-select");
if (languageSelect) {
  languageSelect.addEventListener("change", () => languageSelect.form.submit());
}

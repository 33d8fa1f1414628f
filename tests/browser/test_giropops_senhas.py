"""giropops-senhas in the browser: a password generated through the form shows up in the list."""

import string

from selenium.webdriver.common.keys import Keys

APP = "giropops-senhas"


def test_a_password_generated_through_the_form_is_shown_and_listed(browser):
    browser.open("/")
    assert browser.text("h1") == "Giropops Senhas"
    browser.screenshot("form")

    # As a visitor does it: the slider moves with the arrow keys, from 12 to 20, and its label follows.
    slider = browser.find("input#tamanho")
    assert slider.get_attribute("value") == "12"
    slider.send_keys(*[Keys.ARROW_RIGHT] * 8)
    browser.wait_for_text("output#tamanho-valor", "20")
    for checkbox in browser.find_all("input[type=checkbox]"):
        if not checkbox.is_selected():
            checkbox.click()
    browser.screenshot("options-chosen")

    browser.follow(browser.find("button[type=submit]"))
    password_field = browser.find("input#senha")
    assert password_field.get_attribute("type") == "password", "the new password starts hidden"
    browser.find("button[data-toggle-target=senha]").click()
    browser.wait.until(lambda _: password_field.get_attribute("type") == "text")
    password = password_field.get_attribute("value")
    assert len(password) == 20
    assert any(character in string.digits for character in password), password
    assert any(character in string.punctuation for character in password), password

    newest = browser.find(".history ol li:first-child code")
    assert newest.text == password
    browser.screenshot("password-generated-and-listed")

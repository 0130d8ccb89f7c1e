from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp

from apps.accounts.otp import otp_device_create


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("staffer", "s@example.com", "a-long-password-1", is_staff=True)


def _login(client, password: str, otp_token: str = "", otp_device: str = "") -> object:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "staffer", "password": password, "otp_device": otp_device, "otp_token": otp_token},
    )


def test_admin_refuses_staff_without_a_verified_device(client, staff_user):
    # given a staff member with a correct password but no OTP device
    # when they log in
    _login(client, "a-long-password-1")
    # then the admin index still sends them to the login page
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_refuses_a_wrong_otp_code(client, staff_user):
    # given a TOTP device
    otp_device_create(user=staff_user, totp=True)
    # when the code is wrong
    device = staff_user.totpdevice_set.get()
    _login(client, "a-long-password-1", otp_token="000000", otp_device=device.persistent_id)
    # then there is no way in
    assert client.get("/admin/").status_code == 302


def test_admin_admits_staff_with_a_valid_totp_code(client, staff_user):
    # given a TOTP device
    otp_device_create(user=staff_user, totp=True)
    device = staff_user.totpdevice_set.get()
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    # when the staff member logs in with password and code
    _login(client, "a-long-password-1", otp_token=code, otp_device=device.persistent_id)
    # then the admin opens
    assert client.get("/admin/").status_code == 200


def test_login_page_is_served(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"otp_token" in response.content


def test_ensure_admin_is_created_once(db, capsys):
    from django.core.management import call_command

    # when the command runs twice
    call_command("ensure_admin")
    first = capsys.readouterr().out
    call_command("ensure_admin")
    second = capsys.readouterr().out
    # then one admin exists; its password and TOTP URI were printed only the first time
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert "password:" in first
    assert "otpauth://totp/" in first
    assert "password:" not in second
    assert "exists" in second

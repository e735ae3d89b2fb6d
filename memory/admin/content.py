"""The admin's pages for an entry's content: the edit form, the history (field-by-field diff,
restore) and the approval. Each page checks its own permission, parses the request, calls one
service of :mod:`memory.services.versions` and says what happened."""
from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _, gettext_lazy

from memory.engine.versions import ADDED, CHANGED, REMOVED, EntryNotFound, VersionNotFound
from memory.models import (
    APPROVE_PERMISSION, EDIT_PERMISSION, OVERRIDE_APPROVAL_PERMISSION, ContentOrigin, ProductMemoryEntry,
)
from memory.providers.content import CONTENT_FIELDS, REQUIRED_LIST_FIELDS, REQUIRED_TEXT_FIELDS
from memory.services.versions import edit_content, entry_history, restore_version, set_approval, validate_edited_content

LIST_FIELDS = tuple(REQUIRED_LIST_FIELDS)
CHANGE_LABELS = {ADDED: gettext_lazy("added"), REMOVED: gettext_lazy("removed"), CHANGED: gettext_lazy("changed")}


def may_edit(request) -> bool:
    return request.user.has_perm(EDIT_PERMISSION)


def may_approve(request) -> bool:
    return request.user.has_perm(APPROVE_PERMISSION)


def may_override_approval(request) -> bool:
    return request.user.has_perm(OVERRIDE_APPROVAL_PERMISSION)


FIELD_LABELS = {"title": gettext_lazy("Title"), "description": gettext_lazy("Description"),
                "bullet_points": gettext_lazy("Bullet points"), "seo_keywords": gettext_lazy("SEO keywords")}


class ContentForm(forms.Form):
    """The content schema's four fields, lists one item per line. The schema itself
    (:func:`~memory.services.versions.validate_edited_content`) is the one validation: its
    message goes to the field it names. Keys of the content beyond the schema are kept."""

    title = forms.CharField(label=FIELD_LABELS["title"], required=False,
                            widget=forms.TextInput(attrs={"class": "vLargeTextField"}))
    description = forms.CharField(label=FIELD_LABELS["description"], required=False, strip=False,
                                  widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField"}))
    bullet_points = forms.CharField(label=FIELD_LABELS["bullet_points"], required=False,
                                    help_text=gettext_lazy("One per line."),
                                    widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}))
    seo_keywords = forms.CharField(label=FIELD_LABELS["seo_keywords"], required=False,
                                   help_text=gettext_lazy("One per line."),
                                   widget=forms.Textarea(attrs={"rows": 4, "class": "vLargeTextField"}))

    def __init__(self, *args, payload: dict, **kwargs):
        initial = {name: "\n".join(map(str, payload.get(name) or [])) if name in LIST_FIELDS
                   else payload.get(name, "") for name in self.base_fields}
        super().__init__(*args, initial=initial, **kwargs)
        self.payload = payload
        self.content: dict | None = None

    def clean(self):
        data = super().clean()
        content = dict(self.payload)
        for name in REQUIRED_TEXT_FIELDS:
            content[name] = data.get(name, "")
        for name in LIST_FIELDS:
            content[name] = [line.strip() for line in (data.get(name) or "").splitlines() if line.strip()]
        try:
            self.content = validate_edited_content(content)
        except ValueError as exc:
            message = str(exc).removeprefix("content: ")
            field, _separator, rest = message.partition(": ")
            if field in self.fields and rest:
                self.add_error(field, rest)
            else:
                self.add_error(None, message)
        return data

    @property
    def other_keys(self) -> list[str]:
        return sorted(set(self.payload) - set(self.base_fields))


class FieldsForm(forms.Form):
    """The content fields a regeneration of some fields alone is asked for."""

    names = forms.MultipleChoiceField(
        label=gettext_lazy("Fields to regenerate"), widget=forms.CheckboxSelectMultiple,
        choices=[(name, FIELD_LABELS[name]) for name in CONTENT_FIELDS],
        error_messages={"required": gettext_lazy("Choose at least one field.")},
    )


def _entry_or_404(object_id) -> ProductMemoryEntry:
    return get_object_or_404(ProductMemoryEntry.objects.defer("source_data"), pk=object_id)


def _page(model_admin, request, template: str, entry: ProductMemoryEntry, title: str, **context):
    return TemplateResponse(request, f"admin/memory/productmemoryentry/{template}", {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": entry,
        "title": title,
        "change_url": reverse("admin:memory_productmemoryentry_change", args=[entry.pk]),
        **context,
    })


def edit_view(model_admin, request, object_id):
    """GET: the form with the current content; POST: saved as a new version, or the form with
    the schema's message beside the field it names."""
    if not may_edit(request):
        raise PermissionDenied
    entry = _entry_or_404(object_id)
    form = ContentForm(request.POST if request.method == "POST" else None, payload=entry.payload)
    if request.method == "POST" and form.is_valid():
        try:
            written = edit_content(entry.product_id, form.content, author=request.user.get_username(),
                                   kind=entry.kind)
        except EntryNotFound as exc:
            model_admin.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:memory_productmemoryentry_changelist"))
        model_admin.message_user(request, _("Content saved as version %(version)d of %(product)s.") % {
            "version": written.version, "product": entry.product_id}, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:memory_productmemoryentry_change", args=[entry.pk]))
    return _page(model_admin, request, "edit_content.html", entry,
                 _("Edit content of %(product)s") % {"product": entry.product_id}, form=form)


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def versions_view(model_admin, request, object_id):
    """The versions kept, newest first, each with what it changed field by field, and a restore
    button for those who may edit."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    entry = _entry_or_404(object_id)
    found = entry_history(entry.product_id, kind=entry.kind)
    origins = dict(ContentOrigin.choices)
    for version in found["versions"]:
        version["origin_label"] = origins.get(version["origin"], version["origin"])
        for change in version["changes"] or []:
            change["label"] = CHANGE_LABELS[change["change"]]
            change["before_text"] = _shown(change["before"])
            change["after_text"] = _shown(change["after"])
    return _page(model_admin, request, "versions.html", entry,
                 _("Versions of %(product)s") % {"product": entry.product_id},
                 history=found, may_restore=may_edit(request))


def restore_view(model_admin, request, object_id, number):
    """POST only: version ``number`` becomes the content again, as a new version."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not may_edit(request):
        raise PermissionDenied
    entry = _entry_or_404(object_id)
    try:
        written = restore_version(entry.product_id, number, author=request.user.get_username(), kind=entry.kind)
    except (VersionNotFound, ValueError) as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
    else:
        model_admin.message_user(request, _("Version %(number)d restored as version %(version)d.") % {
            "number": number, "version": written.version}, messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:memory_productmemoryentry_versions", args=[entry.pk]))


def approval_view(model_admin, request, object_id):
    """POST only, ``approved=1`` or ``approved=0``: approve the content or withdraw the approval."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not may_approve(request):
        raise PermissionDenied
    entry = _entry_or_404(object_id)
    approved = request.POST.get("approved") == "1"
    set_approval(entry.product_id, approved, by=request.user.get_username(), kind=entry.kind)
    if approved:
        message = _("%(product)s approved: it is served as it is and no regeneration replaces it.")
    else:
        message = _("Approval of %(product)s withdrawn.")
    model_admin.message_user(request, message % {"product": entry.product_id}, messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:memory_productmemoryentry_change", args=[entry.pk]))

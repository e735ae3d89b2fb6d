"""The admin's content pages: the edit form, the versions with their diff and restore, the
approval (button and actions), the regeneration notice, and who may use each."""
import pytest
from django.test import Client
from django.urls import reverse

from memory.engine.memory import ProductMemory
from memory.models import ContentVersion, ProductMemoryEntry

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:memory_productmemoryentry_changelist"
CONTENT = {"title": "Tênis de Corrida Leve", "description": "Amortecimento macio.", "bullet_points": ["Leve", "Macio"],
           "seo_keywords": ["tênis", "corrida"], "cor": "azul"}


@pytest.fixture
def entry(eager_tasks):
    ProductMemory().save_product_data({"sku": "ABC-1", "title": "Tênis de Corrida Leve"}, CONTENT,
                                      tokens_prompt=100, tokens_completion=50)
    return ProductMemoryEntry.objects.get(product_id="ABC-1")


@pytest.fixture
def staff_with(make_user):
    made = []

    def login(*perms):
        made.append(perms)
        client = Client()
        client.force_login(make_user(f"equipe{len(made)}", staff=True, perms=["view_productmemoryentry", *perms]))
        return client
    return login


def url(name, entry, *args):
    return reverse(f"admin:memory_productmemoryentry_{name}", args=[entry.pk, *args])


def form_data(**changes):
    data = {"title": CONTENT["title"], "description": CONTENT["description"],
            "bullet_points": "\n".join(CONTENT["bullet_points"]), "seo_keywords": "\n".join(CONTENT["seo_keywords"])}
    return {**data, **changes}


def test_the_detail_page_links_the_edit_form_the_versions_and_the_approval(admin_client, entry):
    html = admin_client.get(url("change", entry)).content.decode()
    assert url("edit_content", entry) in html and url("versions", entry) in html
    assert f'action="{url("approval", entry)}"' in html and 'name="approved" value="1"' in html


def test_the_edit_form_saves_a_new_version_by_its_author_and_keeps_other_keys(admin_client, entry):
    page = admin_client.get(url("edit_content", entry))
    assert page.status_code == 200 and "Tênis de Corrida Leve" in page.content.decode()
    done = admin_client.post(url("edit_content", entry), form_data(title="Tênis Leve de Corrida",
                                                                  seo_keywords="tênis\n\n corrida leve \n"))
    assert done.status_code == 302 and done["Location"] == url("change", entry)
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.version, row.origin, row.author) == (2, "edited", "admin")
    assert row.payload == {**CONTENT, "title": "Tênis Leve de Corrida", "seo_keywords": ["tênis", "corrida leve"]}
    assert ProductMemory().get_product_data("ABC-1").content["title"] == "Tênis Leve de Corrida"


def test_the_edit_form_shows_the_schema_message_beside_its_field_and_saves_nothing(admin_client, entry):
    page = admin_client.post(url("edit_content", entry), form_data(title="", bullet_points=""),
                             HTTP_ACCEPT_LANGUAGE="pt-br")
    assert page.status_code == 200
    assert page.context["form"].errors == {"title": ["obrigatório, texto não vazio"]}
    assert "obrigatório, texto não vazio" in page.content.decode()
    assert ProductMemoryEntry.objects.get(pk=entry.pk).version == 1


def test_the_versions_page_shows_each_change_and_restores_a_version(admin_client, entry):
    admin_client.post(url("edit_content", entry), form_data(title="Título <b>errado</b>"))
    html = admin_client.get(url("versions", entry)).content.decode()
    assert "Título &lt;b&gt;errado&lt;/b&gt;" in html  # escaped, never markup
    assert 'class="memory-diff--changed"' in html
    assert url("restore_version", entry, 1) in html and url("restore_version", entry, 2) not in html  # 2 is current

    done = admin_client.post(url("restore_version", entry, 1))
    assert done.status_code == 302 and done["Location"] == url("versions", entry)
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.version, row.origin, row.payload) == (3, "restored", CONTENT)
    assert admin_client.get(url("restore_version", entry, 1)).status_code == 405


def test_the_approval_button_approves_and_withdraws(admin_client, entry):
    admin_client.post(url("approval", entry), {"approved": "1"})
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.approved, row.approved_by) == (True, "admin")
    listing = admin_client.get(reverse(CHANGELIST), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert 'memory-badge--approved">aprovado<' in listing
    assert 'name="approved" value="0"' in admin_client.get(url("change", entry)).content.decode()
    admin_client.post(url("approval", entry), {"approved": "0"})
    assert not ProductMemoryEntry.objects.get(pk=entry.pk).approved


def test_regenerating_approved_entries_leaves_them_and_says_so(admin_client, entry):
    ProductMemory().set_approval("ABC-1", True, by="ana")
    response = admin_client.post(reverse(CHANGELIST), {
        "action": "regenerate_selected", "_selected_action": [entry.pk]}, follow=True, HTTP_ACCEPT_LANGUAGE="pt-br")
    notices = [str(m) for m in response.context["messages"]]
    assert any("está aprovada e não foi regenerada" in n for n in notices), notices
    assert ProductMemoryEntry.objects.get(pk=entry.pk).version == 1

    admin_client.post(reverse(CHANGELIST), {"action": "regenerate_approved_too_selected",
                                            "_selected_action": [entry.pk]})
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.version, row.origin, row.approved) == (2, "generated", False)


def test_approve_actions_on_a_selection(admin_client, entry, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(CHANGELIST), {"action": "approve_selected", "_selected_action": [entry.pk]})
    assert ProductMemoryEntry.objects.get(pk=entry.pk).approved
    assert ProductMemory().get_product_data("ABC-1").approved
    filtered = admin_client.get(reverse(CHANGELIST), {"approved": "1"})
    assert [e.product_id for e in filtered.context["cl"].result_list] == ["ABC-1"]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(CHANGELIST), {"action": "unapprove_selected", "_selected_action": [entry.pk]})
    assert not ProductMemoryEntry.objects.get(pk=entry.pk).approved


# -- who may do what ---------------------------------------------------------------------------------


def test_a_viewer_sees_the_versions_but_changes_nothing(staff_with, entry):
    viewer = staff_with()
    assert viewer.get(url("versions", entry)).status_code == 200
    html = viewer.get(url("change", entry)).content.decode()
    assert url("edit_content", entry) not in html and url("approval", entry) not in html
    assert viewer.get(url("edit_content", entry)).status_code == 403
    assert viewer.post(url("edit_content", entry), form_data(title="Outro")).status_code == 403
    assert viewer.post(url("approval", entry), {"approved": "1"}).status_code == 403
    ProductMemory().replace_content("ABC-1", {**CONTENT, "title": "Outro"}, origin="edited", author="maria")
    assert viewer.post(url("restore_version", entry, 1)).status_code == 403
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.version, row.approved) == (2, False)
    assert ContentVersion.objects.filter(entry=entry).count() == 2


def test_the_actions_offered_follow_the_permissions(staff_with, entry):
    def actions(client):
        return set(dict(client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices))

    assert {"approve_selected", "unapprove_selected", "regenerate_selected",
            "regenerate_approved_too_selected"}.isdisjoint(actions(staff_with()))
    assert {"approve_selected", "unapprove_selected"} <= actions(staff_with("approve_productmemoryentry"))
    changer = actions(staff_with("change_productmemoryentry"))
    assert "regenerate_selected" in changer and "regenerate_approved_too_selected" not in changer
    assert "regenerate_approved_too_selected" in actions(
        staff_with("change_productmemoryentry", "override_approval_productmemoryentry"))


def test_an_editor_may_edit_but_not_approve(staff_with, entry):
    editor = staff_with("edit_productmemoryentry")
    assert editor.post(url("edit_content", entry), form_data(title="Editado")).status_code == 302
    assert editor.post(url("approval", entry), {"approved": "1"}).status_code == 403
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert (row.payload["title"], row.approved) == ("Editado", False)


def test_regenerating_some_fields_asks_which_then_keeps_the_others(admin_client, entry):
    page = admin_client.post(reverse(CHANGELIST), {"action": "regenerate_fields_selected",
                                                   "_selected_action": [entry.pk]})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="names" value="seo_keywords"' in html and 'name="apply"' in html
    refused = admin_client.post(reverse(CHANGELIST), {"action": "regenerate_fields_selected",
                                                      "_selected_action": [entry.pk], "apply": "1"})
    assert refused.status_code == 200 and refused.context["form"].errors  # no field chosen: asked again
    done = admin_client.post(reverse(CHANGELIST), {"action": "regenerate_fields_selected",
                                                   "_selected_action": [entry.pk], "apply": "1",
                                                   "names": ["seo_keywords"]}, follow=True)
    assert done.status_code == 200
    row = ProductMemoryEntry.objects.get(pk=entry.pk)
    assert row.version == 2 and row.payload["seo_keywords"] != CONTENT["seo_keywords"]
    assert {k: v for k, v in row.payload.items() if k != "seo_keywords"} == {
        k: v for k, v in CONTENT.items() if k != "seo_keywords"}

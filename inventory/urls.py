from django.urls import path

from inventory.views import vcenters, vms

app_name = "inventory"
urlpatterns = [
    path("", vms.index, name="index"),
    path("vms/<int:pk>/", vms.vm_detail, name="vm"),
    path("vcenters/", vcenters.vcenter_list, name="vcenters"),
    path("vcenters/add/", vcenters.vcenter_add, name="vcenter_add"),
    path("vcenters/<int:pk>/edit/", vcenters.vcenter_edit, name="vcenter_edit"),
    path("vcenters/<int:pk>/test/", vcenters.vcenter_test, name="vcenter_test"),
    path("vcenters/<int:pk>/sync/", vcenters.vcenter_sync, name="vcenter_sync"),
    path("vcenters/<int:pk>/remove/", vcenters.vcenter_remove, name="vcenter_remove"),
]

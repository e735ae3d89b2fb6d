'use strict';
// The admin's navigation sidebar starts closed, so that a list has the page's width (at 1400 px the
// entries list needs all of it). Its toggle still opens it, and Django remembers that choice under the
// same key. Runs before Django's nav_sidebar.js, which is deferred.
if (localStorage.getItem('django.admin.navSidebarIsOpen') === null) {
    localStorage.setItem('django.admin.navSidebarIsOpen', 'false');
}

// Users and privileges as vCenter has them. vcsim 0.24.2 accepts one user name and answers every
// privilege question "granted", so a client's check of its rights (inventory.vcenter's
// missing_privileges) would never see a right missing. Here:
//
//   - Users. The -username user and each -extra-user NAME:PASSWORD may log in (Login is routed to
//     sessionLogin; anything else is InvalidLogin, as before). As on vCenter, a session's userName
//     and a permission's principal name an SSO user "NAME@DOMAIN" as "DOMAIN\NAME", the domain in
//     capitals ("cloudadmin@vsphere.local" is "VSPHERE.LOCAL\cloudadmin"); a name without "@" is
//     its own principal, as an ESXi local user. Principals compare case-insensitively. Users belong
//     to no groups.
//   - Permissions. The -username user is Admin on the root folder (propagating), so it may do
//     everything, as before; an extra user has no permission, so no privilege, until one is set.
//     SetEntityPermissions adds the given principals' permissions to the entity or replaces theirs,
//     keeping other principals' (vcsim replaced the entity's whole list), as vSphere documents; a
//     role that does not exist is NotFound, a principal that is no user (nor one of vcsim's
//     built-in root/admin principals) UserNotFound. Principals are stored as "DOMAIN\NAME".
//     AddAuthorizationRole returns the new role's id (vcsim returned 0).
//   - Privileges. HasPrivilegeOnEntity and HasPrivilegeOnEntities (for the user of the session
//     named by sessionId), HasUserPrivilegeOnEntities and FetchUserPrivilegeOnEntities (for a user
//     name, in either form) answer from the permissions: the most specific one wins, that is the
//     user's permission on the entity itself or else the nearest propagating one on an ancestor
//     (ManagedEntity.parent up to the root folder), and grants its role's privileges (RoleList); a
//     user with no such permission has none. A VM's second path on vSphere, through its resource
//     pool, is not followed. An unknown sessionId is InvalidArgument, an unknown entity
//     ManagedObjectNotFound.
//
// No other method checks privileges: a restricted user can still call anything, so tests of what
// a client refuses to start must rely on the client's own check.
package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const loginExtensionType = "SessionManagerExtension"

// userList is the repeatable -extra-user flag: "NAME:PASSWORD" (the password may contain ':').
type userList []string

func (l *userList) String() string { return strings.Join(*l, ",") }

func (l *userList) Set(v string) error {
	name, password, ok := strings.Cut(v, ":")
	if !ok || name == "" || password == "" {
		return fmt.Errorf("want NAME:PASSWORD, got %q", v)
	}
	*l = append(*l, v)
	return nil
}

// principal is vCenter's name of a login user: "NAME@DOMAIN" -> "DOMAIN\NAME"; others unchanged.
func principal(login string) string {
	name, domain, ok := strings.Cut(login, "@")
	if !ok || name == "" || domain == "" {
		return login
	}
	return strings.ToUpper(domain) + `\` + name
}

func samePrincipal(a, b string) bool { return strings.EqualFold(principal(a), principal(b)) }

// registerPrivileges puts sessionLogin and authz in the registry; the default user becomes Admin on
// the root folder. Returns the users (login name -> password), for the REST API's sign-in too.
func registerPrivileges(model *simulator.Model, defaultUser, defaultPassword string, extra userList) (map[string]string, error) {
	users := map[string]string{defaultUser: defaultPassword}
	for _, u := range extra {
		name, password, _ := strings.Cut(u, ":")
		if _, taken := users[name]; taken {
			return nil, fmt.Errorf("-extra-user %s: a user of that name exists already", name)
		}
		users[name] = password
	}
	sm := *model.ServiceContent.SessionManager
	loginRef := types.ManagedObjectReference{Type: loginExtensionType, Value: sm.Value}
	simulator.Map.Put(&sessionLogin{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: loginRef}, self: loginRef, users: users})

	ref := *model.ServiceContent.AuthorizationManager
	stock := simulator.Map.Get(ref).(*simulator.AuthorizationManager)
	// A copy shares vcsim's permission map; from now on only the copy is in the registry.
	a := &authz{AuthorizationManager: *stock, users: users, sessionManager: sm}
	simulator.Map.Put(a)
	admin := a.roleNamed("Admin")
	if admin == nil {
		return nil, fmt.Errorf("vcsim has no Admin role")
	}
	grant := types.Permission{Principal: defaultUser, RoleId: admin.RoleId, Propagate: true}
	res := a.SetEntityPermissions(&types.SetEntityPermissions{
		This: ref, Entity: model.ServiceContent.RootFolder, Permission: []types.Permission{grant},
	})
	if f := res.Fault(); f != nil {
		return nil, fmt.Errorf("admin permission for %s: %s", defaultUser, f.String)
	}
	return users, nil
}

// ---- login ----

// sessionLogin answers Login for every configured user (the interceptor reroutes Login to it).
type sessionLogin struct {
	mo.ExtensibleManagedObject // first: see vmExtension
	self                       types.ManagedObjectReference
	users                      map[string]string // login name -> password
}

func (l *sessionLogin) Reference() types.ManagedObjectReference { return l.self }

// Login makes a session as vcsim's createSession does, with vCenter's principal as its userName.
func (l *sessionLogin) Login(ctx *simulator.Context, req *types.Login) soap.HasFault {
	body := new(methods.LoginBody)
	password, known := l.users[req.UserName]
	if ctx.Session != nil || !known || req.Password != password {
		body.Fault_ = simulator.Fault("Login failure", new(types.InvalidLogin))
		return body
	}
	locale := req.Locale
	if locale == "" {
		locale = session.Locale
	}
	now, name := time.Now().UTC(), principal(req.UserName)
	ctx.SetSession(simulator.Session{
		UserSession: types.UserSession{
			Key: uuid.New().String(), UserName: name, FullName: name, LoginTime: now, LastActiveTime: now,
			Locale: locale, MessageLocale: locale, ExtensionSession: types.NewBool(false),
		},
		Registry: simulator.NewRegistry(),
	}, true)
	body.Res = &types.LoginResponse{Returnval: ctx.Session.UserSession}
	return body
}

var sessionManagerThis = thisPattern("SessionManager")

// rerouteLogin sends a Login request to sessionLogin; other bodies are returned unchanged.
func rerouteLogin(body []byte) []byte {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil || method.This.Type != "SessionManager" {
		return body
	}
	if _, ok := method.Body.(*types.Login); !ok {
		return body
	}
	if simulator.Map.Get(types.ManagedObjectReference{Type: loginExtensionType, Value: method.This.Value}) == nil {
		return body
	}
	return sessionManagerThis.ReplaceAll(body, []byte("${1}"+loginExtensionType+"${2}"))
}

// ---- permissions and privileges ----

type authz struct {
	simulator.AuthorizationManager // first: the PropertyCollector reads roleList from it
	users                          map[string]string
	sessionManager                 types.ManagedObjectReference
}

func (a *authz) roleNamed(name string) *types.AuthorizationRole {
	for i := range a.RoleList {
		if a.RoleList[i].Name == name {
			return &a.RoleList[i]
		}
	}
	return nil
}

func (a *authz) role(id int32) *types.AuthorizationRole {
	for i := range a.RoleList {
		if a.RoleList[i].RoleId == id {
			return &a.RoleList[i]
		}
	}
	return nil
}

func (a *authz) AddAuthorizationRole(req *types.AddAuthorizationRole) soap.HasFault {
	res := a.AuthorizationManager.AddAuthorizationRole(req)
	if body, ok := res.(*methods.AddAuthorizationRoleBody); ok && body.Res != nil {
		if r := a.roleNamed(req.Name); r != nil {
			body.Res.Returnval = r.RoleId
		}
	}
	return res
}

func isEntity(ref types.ManagedObjectReference) bool {
	_, ok := simulator.Map.Get(ref).(mo.Entity)
	return ok
}

func notFound(ref types.ManagedObjectReference) *soap.Fault {
	return simulator.Fault(fmt.Sprintf("The object '%s' has already been deleted or has not been completely created", ref),
		&types.ManagedObjectNotFound{Obj: ref})
}

// permissionsOn returns a copy of the permissions defined on the entity itself.
func (a *authz) permissionsOn(ref types.ManagedObjectReference) []types.Permission {
	res := a.AuthorizationManager.RetrieveEntityPermissions(&types.RetrieveEntityPermissions{Entity: ref})
	return append([]types.Permission(nil), res.(*methods.RetrieveEntityPermissionsBody).Res.Returnval...)
}

func (a *authz) knownPrincipal(name string, group bool) bool {
	for _, u := range simulator.DefaultUserGroup {
		if u.Group == group && samePrincipal(u.Principal, name) {
			return true
		}
	}
	for login := range a.users {
		if !group && samePrincipal(login, name) {
			return true
		}
	}
	return false
}

func (a *authz) SetEntityPermissions(req *types.SetEntityPermissions) soap.HasFault {
	body := new(methods.SetEntityPermissionsBody)
	if !isEntity(req.Entity) {
		body.Fault_ = notFound(req.Entity)
		return body
	}
	merged := a.permissionsOn(req.Entity)
	for _, p := range req.Permission {
		if a.role(p.RoleId) == nil {
			body.Fault_ = simulator.Fault(fmt.Sprintf("role %d not found", p.RoleId), new(types.NotFound))
			return body
		}
		if !a.knownPrincipal(p.Principal, p.Group) {
			body.Fault_ = simulator.Fault(fmt.Sprintf("principal %s not found", p.Principal),
				&types.UserNotFound{Principal: p.Principal, Unresolved: true})
			return body
		}
		entity := req.Entity
		p.Entity, p.Principal = &entity, principal(p.Principal)
		kept := merged[:0]
		for _, q := range merged {
			if q.Group != p.Group || !samePrincipal(q.Principal, p.Principal) {
				kept = append(kept, q)
			}
		}
		merged = append(kept, p)
	}
	return a.AuthorizationManager.SetEntityPermissions(&types.SetEntityPermissions{
		This: req.This, Entity: req.Entity, Permission: merged,
	})
}

// granted returns the user's privileges on the entity: those of the role of the most specific
// permission (on the entity, else the nearest propagating one above it); none without one.
func (a *authz) granted(user string, entity types.ManagedObjectReference) map[string]bool {
	ref, own := &entity, true
	for ref != nil {
		e, ok := simulator.Map.Get(*ref).(mo.Entity)
		if !ok {
			return nil
		}
		for _, p := range a.permissionsOn(*ref) {
			if !p.Group && (own || p.Propagate) && samePrincipal(p.Principal, user) {
				out := map[string]bool{}
				if r := a.role(p.RoleId); r != nil {
					for _, id := range r.Privilege {
						out[id] = true
					}
				}
				return out
			}
		}
		ref, own = e.Entity().Parent, false
	}
	return nil
}

// sessionUser returns the userName of the session with this key.
func (a *authz) sessionUser(ctx *simulator.Context, key string) (string, bool) {
	if ctx.Session != nil && ctx.Session.Key == key {
		return ctx.Session.UserName, true
	}
	// A Session's view of the SessionManager lists every session (vcsim keeps them private).
	view, ok := (&simulator.Session{Registry: simulator.NewRegistry()}).Get(a.sessionManager).(*simulator.SessionManager)
	if ok {
		for _, s := range view.SessionList {
			if s.Key == key && key != "" {
				return s.UserName, true
			}
		}
	}
	return "", false
}

func badSession(key string) *soap.Fault {
	return simulator.Fault(fmt.Sprintf("no session %q", key), &types.InvalidArgument{InvalidProperty: "sessionId"})
}

// availability answers for each entity whether the user has each privilege.
func (a *authz) availability(user string, entities []types.ManagedObjectReference, privIDs []string) ([]types.EntityPrivilege, *soap.Fault) {
	var out []types.EntityPrivilege
	for _, e := range entities {
		if !isEntity(e) {
			return nil, notFound(e)
		}
		has := a.granted(user, e)
		answer := types.EntityPrivilege{Entity: e}
		for _, id := range privIDs {
			answer.PrivAvailability = append(answer.PrivAvailability, types.PrivilegeAvailability{PrivId: id, IsGranted: has[id]})
		}
		out = append(out, answer)
	}
	return out, nil
}

func (a *authz) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	body := new(methods.HasPrivilegeOnEntitiesBody)
	user, ok := a.sessionUser(ctx, req.SessionId)
	if !ok {
		body.Fault_ = badSession(req.SessionId)
		return body
	}
	answers, fault := a.availability(user, req.Entity, req.PrivId)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	body.Res = &types.HasPrivilegeOnEntitiesResponse{Returnval: answers}
	return body
}

// HasPrivilegeOnEntityResponse replaces govmomi's, whose returnval is ",omitempty": Go's XML
// encoder then drops every false from the list (the type's name is the response element's name).
type HasPrivilegeOnEntityResponse struct {
	Returnval []bool `xml:"returnval"`
}

type hasPrivilegeOnEntityBody struct {
	Res    *HasPrivilegeOnEntityResponse
	Fault_ *soap.Fault
}

func (b *hasPrivilegeOnEntityBody) Fault() *soap.Fault { return b.Fault_ }

func (a *authz) HasPrivilegeOnEntity(ctx *simulator.Context, req *types.HasPrivilegeOnEntity) soap.HasFault {
	body := new(hasPrivilegeOnEntityBody)
	user, ok := a.sessionUser(ctx, req.SessionId)
	if !ok {
		body.Fault_ = badSession(req.SessionId)
		return body
	}
	answers, fault := a.availability(user, []types.ManagedObjectReference{req.Entity}, req.PrivId)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	body.Res = &HasPrivilegeOnEntityResponse{}
	for _, p := range answers[0].PrivAvailability {
		body.Res.Returnval = append(body.Res.Returnval, p.IsGranted)
	}
	return body
}

func (a *authz) HasUserPrivilegeOnEntities(req *types.HasUserPrivilegeOnEntities) soap.HasFault {
	body := new(methods.HasUserPrivilegeOnEntitiesBody)
	answers, fault := a.availability(req.UserName, req.Entities, req.PrivId)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	body.Res = &types.HasUserPrivilegeOnEntitiesResponse{Returnval: answers}
	return body
}

func (a *authz) FetchUserPrivilegeOnEntities(req *types.FetchUserPrivilegeOnEntities) soap.HasFault {
	body := new(methods.FetchUserPrivilegeOnEntitiesBody)
	body.Res = &types.FetchUserPrivilegeOnEntitiesResponse{}
	for _, e := range req.Entities {
		if !isEntity(e) {
			body.Res, body.Fault_ = nil, notFound(e)
			return body
		}
		result := types.UserPrivilegeResult{Entity: e}
		for id := range a.granted(req.UserName, e) {
			result.Privileges = append(result.Privileges, id)
		}
		sort.Strings(result.Privileges)
		body.Res.Returnval = append(body.Res.Returnval, result)
	}
	return body
}

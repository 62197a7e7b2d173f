// A Key Vault (RBAC, purge protection, audit logs) with the given secrets, readable only by
// the given principals (Key Vault Secrets User). main.bicep makes two: the app vault (sim
// token, database password) read by the app identity, and the restore vault (the age
// identity that decrypts backups) read only by the operator/restore principal, so a
// compromised app cannot decrypt a backup. Production reaches both only through private
// endpoints; an environment with publicAccess on also admits the allowedIpRanges.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Secrets to store, name to value.')
@secure()
param secretValues object

@description('Principal ids that may read the secrets.')
param readerPrincipalIds array

@description('Principal type of those readers (ServicePrincipal for a managed identity, so a new identity is not refused as not found yet); empty: let ARM look it up.')
param readerPrincipalType string = ''

@description('Log Analytics workspace for audit logs.')
param logAnalyticsWorkspaceId string

@description('Accept traffic from the public internet (only from allowedIpRanges).')
param publicAccess bool

@description('IPv4 addresses or CIDR ranges admitted when publicAccess is on.')
param allowedIpRanges array

@description('Put a CanNotDelete lock on the vault (production data).')
param lock bool

var lockName = 'emrops-data-lock'

var secretsUserRole = '4633458b-17de-408a-b874-0445c86b69e6'
var publicNetworkAccess = publicAccess ? 'Enabled' : 'Disabled'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  #checkov:skip=CKV_AZURE_189:Per environment (publicDataAccess): Disabled in production, where the vault is reached only through its private endpoint; Enabled in staging with network default Deny and an IP allow-list. tests/provision/test_templates.py asserts both
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Deny'
      ipRules: [for range in (publicAccess ? allowedIpRanges : []): {
        value: range
      }]
    }
  }
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for secret in items(secretValues): {
  #checkov:skip=CKV_AZURE_41:Rotated by the operator on demand; old backups must stay decryptable, so nothing expires on a timer
  parent: vault
  name: secret.key
  properties: {
    value: secret.value
    contentType: 'text/plain'
  }
}]

resource readers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in readerPrincipalIds: {
  name: guid(vault.id, principalId, secretsUserRole)
  scope: vault
  properties: {
    principalId: principalId
    principalType: empty(readerPrincipalType) ? null : readerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRole)
  }
}]

resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-workspace'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// Production data: a CanNotDelete lock (lockDataResources) keeps the vault from being deleted by
// a slip (portal, CLI, a resource group delete); updates still go through.
// Purge protection covers a vault already deleted; the lock stops the delete itself.
resource vaultLock 'Microsoft.Authorization/locks@2020-05-01' = if (lock) {
  name: lockName
  scope: vault
  properties: {
    level: 'CanNotDelete'
    notes: 'Production data (lockDataResources in environments/production.toml). To delete on purpose: verify a recent backup, then az lock delete --name ${lockName} --resource-group ${resourceGroup().name} --resource ${vaultName} --resource-type Microsoft.KeyVault/vaults. The next provision apply puts the lock back while lockDataResources is true.'
  }
}

@description('Vault name (no secret values).')
output vaultName string = vault.name

@description('Vault id (for its private endpoint).')
output id string = vault.id
